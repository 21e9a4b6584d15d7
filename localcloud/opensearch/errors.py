"""The management API's refusals, shared by the engine and the pieces it is made of (pushes, replay)."""

from __future__ import annotations

__all__ = ["EngineError"]


class EngineError(Exception):
    """A management request the engine refuses: a POP-style ``code``, a message and an HTTP status."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
