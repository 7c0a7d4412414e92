"""
How one setting of ``image-gate run`` is declared, read and documented.

A setting is a field of `image_gate.app.settings.Settings` declared with
`setting`: its default, its help and its parser live on that one line, and
the flag (``--tag-ttl-seconds``), the variable (``IMAGE_GATE_TAG_TTL_SECONDS``)
and the ``--help`` text are derived from it. Parsers take the stripped text and
raise `ValueError` with the reason only; the caller puts the flag and the
variable in front, so every message names both the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from image_gate.clouds.quota import Rate

__all__ = [
    "Option",
    "add_options",
    "choice",
    "existing_path",
    "names",
    "options_of",
    "port_number",
    "rate",
    "seconds",
    "setting",
    "setting_from",
    "text",
    "url",
]

T = TypeVar("T")
_OPTION = "image_gate.option"


@dataclass(frozen=True, slots=True)
class Option:
    """A setting as the command line and the environment see it."""

    name: str
    """The flag's argparse dest: ``--name-with-dashes``, ``IMAGE_GATE_NAME_UPPER``."""
    help: str
    parse: Callable[[str], Any]
    """Reads the stripped, non-empty text; raises `ValueError` with the reason."""
    default_text: str | None
    """The default as ``--help`` shows it; None when there is none to show."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return f"IMAGE_GATE_{self.name.upper()}"

    @property
    def where(self) -> str:
        """How error messages name the setting: ``--port (IMAGE_GATE_PORT)``."""
        return f"{self.flag} ({self.env})"

    @property
    def help_text(self) -> str:
        default = f" (default {self.default_text})" if self.default_text is not None else ""
        # argparse formats help with %: a literal one must be doubled.
        return f"{self.help}{default} [env {self.env}]".replace("%", "%%")

    def raw(self, args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
        """The flag's text, else the variable's; None when neither is given or both are blank."""
        value = getattr(args, self.name, None)
        if value is None:
            value = environ.get(self.env)
        return None if value is None or str(value).strip() == "" else str(value).strip()


def setting(default: T, help: str, *, parse: Callable[[str], T], name: str = "", default_text: str | None = None) -> T:
    """A `Settings` field that is also a flag and a variable (``name`` defaults to the field's)."""
    shown = default_text if default_text is not None else _describe(default)
    return field(default=default, metadata={_OPTION: (name, help, parse, shown)})


def setting_from(
    factory: Callable[[], T], help: str, *, parse: Callable[[str], T], name: str = "", default_text: str
) -> T:
    """Like `setting`, for a default that must be built per instance."""
    return field(default_factory=factory, metadata={_OPTION: (name, help, parse, default_text)})


def options_of(cls: type) -> Iterator[tuple[str, Option]]:
    """(field name, option) of every field of the dataclass ``cls`` declared with `setting`."""
    for item in fields(cls):
        declared = _declared(item)
        if declared is not None:
            name, help_text, parse, shown = declared
            yield item.name, Option(name or item.name, help_text, parse, shown)


def add_options(parser: argparse.ArgumentParser, cls: type, *, only: tuple[str, ...] | None = None) -> None:
    """One flag per option of ``cls`` (or of those named in ``only``), each with its variable and default."""
    declared = [option for _, option in options_of(cls)]
    unknown = set(only or ()) - {option.name for option in declared}
    if unknown:
        raise ValueError(f"{cls.__name__} has no option {', '.join(sorted(unknown))}")
    for option in declared:
        if only is None or option.name in only:
            parser.add_argument(option.flag, dest=option.name, default=None, help=option.help_text)


def _declared(item: Field[Any]) -> tuple[str, str, Callable[[str], Any], str | None] | None:
    declared: tuple[str, str, Callable[[str], Any], str | None] | None = item.metadata.get(_OPTION)
    return declared


def _describe(default: object) -> str | None:
    if default is None:
        return None
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, Rate):
        return f"{default.calls}/{default.period:g}"  # as the chart and the docs write it
    if isinstance(default, frozenset):
        return ",".join(sorted(str(item) for item in default))
    return str(default)


# -- parsers: the stripped text in, the value out, or ValueError with the reason


def text(value: str) -> str:
    return value


def names(value: str) -> frozenset[str]:
    """Comma-separated names; blanks between commas are dropped."""
    return frozenset(item.strip() for item in value.split(",") if item.strip())


def existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise ValueError(f"{value} does not exist")
    return path


def port_number(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"must be a port number, not {value!r}")
    return int(value)


def seconds(*, maximum: float | None = None) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number of seconds, not {value!r}") from None
        if number <= 0 or (maximum is not None and number > maximum):
            bound = f" and at most {maximum:g}" if maximum is not None else ""
            raise ValueError(f"must be positive{bound}, not {value}")
        return number

    return parse


def choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    """One of ``choices``, case-insensitively; kept lower case (or upper, for log levels)."""

    def parse(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value.upper() if upper else value.lower()

    return parse


def url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def rate(value: str) -> Rate:
    """``calls/seconds``; `Rate.parse` says what it expected."""
    return Rate.parse(value)
