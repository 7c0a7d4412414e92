"""
Logging: one JSON object per line (for log pipelines), or plain text for humans.

Structured fields passed with ``extra={"review": {...}}`` become keys of the
JSON object. Every admission review writes one such line, so a line costs
microseconds: orjson encodes it, and the timestamp's seconds are formatted once
per second. Nothing here ever formats request headers or credentials: the
cloud clients and kopf never log them, and the fields we add are chosen by
name.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson

__all__ = ["KOPF_OBJECTS", "JsonFormatter", "KopfEchoFilter", "configure_logging"]

KOPF_OBJECTS = "kopf.objects"
"""kopf's logger of what happens to an object: its handlers' and webhooks' outcomes."""

_STANDARD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_PLAIN = (dict, list, str, int, float, bool)


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
"""What orjson would write its own way is handed to ``str`` instead, as `json.dumps` with ``default=str`` did."""


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            # Structured fields only: kopf also attaches its whole settings object to some records.
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and isinstance(value, _PLAIN):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # what orjson refuses (an int past 64 bits, a dict key that is not a string)
            return json.dumps(entry, default=str, ensure_ascii=False)

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC to the millisecond (``2026-01-31T12:00:00.123+00:00``), the seconds formatted once."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"


class KopfEchoFilter(logging.Filter):
    """Drops kopf's echoes of what image-gate already logs better.

    kopf reports every raised ``AdmissionError`` as an ERROR ("Webhook 'pods'
    failed permanently: ..."), although a denial is the webhook working; our
    own "admission denied" line carries the same with every finding. And it
    logs the readiness handler's success on every namespace event.

    Unless ``per_request`` is set (``--debug-http-logs``), it also drops kopf's
    ``Webhook 'pods' succeeded.`` after every review: image-gate's own review line
    says more, and one line per review is what a log pipeline should carry.
    (`configure_logging` keeps such lines from being made at all, by the level of
    kopf's object logger; the filter holds for a handler installed otherwise.)
    """

    def __init__(self, *, per_request: bool = False) -> None:
        super().__init__()
        self.per_request = per_request

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kopf."):
            return True
        message = record.getMessage()
        if "failed permanently: image-gate denied" in message:
            return False
        if not self.per_request and message.startswith("Webhook '") and message.endswith("' succeeded."):
            return False
        return not message.startswith("Handler 'readiness' succeeded")


def configure_logging(*, log_format: str = "json", level: str = "INFO", http_logs: bool = False) -> None:
    """One handler on the root logger; ``http_logs`` keeps kopf's and aiohttp's per-request lines (debugging).

    Without ``http_logs`` kopf's object logger and aiohttp's access logger are set to WARNING (or the
    root's level, if higher): their INFO lines are not even built."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(KopfEchoFilter(per_request=http_logs))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    # Neither format shows where a line was logged from, nor the thread or process: the logging HOWTO's
    # "Optimization" switches skip collecting them (a frame walk per line was a third of a review line's cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request line at INFO; its URLs carry no secrets, but the noise hides ours.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpcore").setLevel(max(logging.WARNING, root.level))
    # aiohttp's access line (one per request, at INFO) only when asked for: the review line says more.
    # Not even built then: the server checks the level before formatting it.
    quiet = root.level if http_logs else max(logging.WARNING, root.level)
    logging.getLogger("aiohttp.access").setLevel(quiet)
    # kopf's per-object lines: at INFO only "Handler/Webhook '...' succeeded.", one per review and per watched
    # event. A level rather than `KopfEchoFilter` alone: kopf's object logger checks it before it merges its
    # fields and builds a record (~10 us a review, which the filter then dropped); warnings and errors stay.
    logging.getLogger(KOPF_OBJECTS).setLevel(quiet)
