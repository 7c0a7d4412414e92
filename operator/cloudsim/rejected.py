"""The one exception both simulators raise for an answer other than success."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Rejected"]


class Rejected(Exception):
    """An answer other than success, as the gateway or service would give it: status, code, message, headers."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
