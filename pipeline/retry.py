"""One retry policy for every remote call that is safe to repeat.

Only errors marked ``transient`` are retried, with exponential backoff and jitter, a bounded number of
times. Callers retry a single page or call, never a whole loop, so a retry resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; waits grow from ``initial_wait_s`` up to ``max_wait_s``."""

    attempts: int = 6
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    max_retry_after_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep

    def wait_s(self, attempt: int, error: BaseException | None) -> float:
        """Exponential backoff with full jitter, but never sooner than the server's Retry-After."""
        backoff = tenacity.wait_random_exponential(multiplier=self.initial_wait_s, max=self.max_wait_s)
        hint = getattr(error, "retry_after_s", None) or 0.0
        return max(backoff(_AttemptOnly(attempt)), min(float(hint), self.max_retry_after_s))

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient PipelineErrors; re-raise the last error when attempts run out."""

        def _log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (attempt %d of %d), retrying in %.1f s: %s",
                what,
                state.attempt_number,
                self.attempts,
                state.next_action.sleep if state.next_action else 0.0,
                exc,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, PipelineError) and e.transient),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=lambda state: self.wait_s(state.attempt_number, state.outcome.exception() if state.outcome else None),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(fn)


class _AttemptOnly:
    """The one field tenacity's wait strategies read from a retry state."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number
