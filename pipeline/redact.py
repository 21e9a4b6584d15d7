"""Keeping credentials out of logs: one place for the two measures we take.

1. Every secret read from an Airflow connection is registered with Airflow's secrets masker, so any
   log line that would carry it is masked (defence in depth: we never log them ourselves).
2. oss2 logs request headers at DEBUG and, at INFO, whole server errors, whose ``StringToSign``
   (returned by OSS on ``SignatureDoesNotMatch``) contains the STS token. Its logger is capped at
   WARNING; our own errors carry what an operator needs without those details.

What we write ourselves outside the logs (an error message kept for the run report) goes through
:func:`redact_text`, the same masker applied by hand.
"""

from __future__ import annotations

import logging

# Loggers of third-party SDKs that print request headers or server-echoed signing material.
NOISY_SDK_LOGGERS = ("oss2",)


def register_secrets(*values: str | None) -> None:
    """Tell Airflow's masker about these values (a no-op outside Airflow)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow is always installed with this package
        return
    for value in values:
        if value:
            mask_secret(value)


def quiet_sdk_loggers() -> None:
    for name in NOISY_SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET included: it would inherit the root level
            logger.setLevel(logging.WARNING)


def redact_text(text: str) -> str:
    """``text`` with every secret registered with Airflow's masker replaced by ``***`` (for what we
    store ourselves, e.g. an error message in a run report, which no log handler masks)."""
    try:
        from airflow.sdk.log import redact
    except ImportError:  # pragma: no cover - Airflow is always installed with this package
        return text
    try:
        return str(redact(text))
    except Exception:  # masking is defence in depth: never lose the message over it
        return text
