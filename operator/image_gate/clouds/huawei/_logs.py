"""
Keep credentials out of httpcore's DEBUG log.

With DEBUG on, httpcore logs every response's headers verbatim; IAM returns
a token in ``X-Subject-Token``. This filter, attached to httpcore's loggers
(a logger's filters see the records created on it), blanks the values of the
headers that carry credentials, whoever logs at DEBUG.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SECRET_HEADERS", "install_redaction", "redact"]

SECRET_HEADERS = ("x-subject-token", "x-auth-token", "authorization", "x-security-token", "proxy-authorization")
_HTTPCORE_LOGGERS = ("httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy", "httpcore.socks")

# (b'X-Subject-Token', b'MIIE...') as httpcore's repr of a header list shows it.
_HEADER_PAIR = re.compile(
    r"""(?P<name>b?(?P<q>['"])(?:"""
    + "|".join(SECRET_HEADERS)
    + r""")(?P=q),\s*b?)(?P<q2>['"])(?P<value>.*?)(?<!\\)(?P=q2)""",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the values of credential-bearing headers replaced by ``<redacted>``."""
    return _HEADER_PAIR.sub(lambda m: f"{m.group('name')}{m.group('q2')}<redacted>{m.group('q2')}", text)


class _RedactSecretHeaders(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = _RedactSecretHeaders()


def install_redaction() -> None:
    """Attach the filter to httpcore's loggers (idempotent)."""
    for name in _HTTPCORE_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
