"""
The credentials vocabulary both clouds speak: one Protocol, one error base, one mask.

Each vendor has its own credential shape (an AK/SK with a project; an
AccessKey pair with an STS token) and its own sources (environment, CCE Pod
Identity, RRSA), but the call pipeline, the wiring and the logs need to know
only this much:

* a credential names itself by a `Credentials.fingerprint` (never the key) and
  says when it `Credentials.expires_at`;
* a `CredentialsProvider` hands out the credential to sign the next request
  with (``await provider.credentials()``), renewing it first when needed;
* anything that goes wrong is a `CredentialsError` (fix the configuration) or
  its `CredentialsUnavailable` (the credential service failed: it may pass);
* a key shown to people goes through `mask`, the same way for both clouds;
* temporary credentials from a credential service (CCE Pod Identity, RRSA)
  are `RenewedCredentials`, exchanged for a projected token file the kubelet
  rotates (`read_token_file`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from image_gate.clouds._common import Refresher

__all__ = [
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "CredentialsUnavailable",
    "RenewedCredentials",
    "TokenAndExpiry",
    "any_set",
    "mask",
    "read_token_file",
    "require_both_halves",
]

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)

_SHOWN = 4
_SHORTEST_SHOWN = 12
"""A key shorter than this shows nothing: four characters of a short key are too much of it."""


class CredentialsError(Exception):
    """No usable credentials: none configured, half configured, or refused by the credential service.

    Retrying does not help. The message says what to fix and never contains a
    secret; ``code`` and ``request_id`` carry what the credential service
    answered, when it answered.
    """

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class CredentialsUnavailable(CredentialsError):
    """The credential service did not answer usefully (connection failed, timed out, 5xx): it may pass."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenAndExpiry:
    """What a credential of either cloud carries besides its key pair when it is temporary (keyword-only).

    Both clouds hand out temporary credentials the same way (CCE Pod Identity, RRSA through STS): a key
    pair with a security token, valid until a time. The vendors' credential values extend this.
    """

    security_token: str | None = None
    expires_at: float | None = None
    """When temporary credentials expire, in seconds since the epoch; None for permanent ones."""


def require_both_halves(key_id: str, secret: str, message: str) -> None:
    """A credential value is a whole key pair: `CredentialsError` with ``message`` when a half is empty."""
    if not key_id or not secret:
        raise CredentialsError(message)


class Credentials(Protocol):
    """One credential, as the code around the signer sees it."""

    @property
    def fingerprint(self) -> str:
        """A short, stable, one-way name: for quota keys, metrics and logs."""
        ...

    @property
    def expires_at(self) -> float | None:
        """Seconds since the epoch when temporary; None for permanent credentials."""
        ...


class CredentialsProvider(Protocol[C_co]):
    """Hands out the credential to sign the next request with."""

    async def credentials(self) -> C_co:
        """A credential valid now; may renew it first. Raises `CredentialsError`."""
        ...

    async def aclose(self) -> None:
        """Release the connections to the credential service, if any."""
        ...


class RenewedCredentials(Generic[C]):
    """Temporary credentials, renewed ahead of expiry by ``self._refresher`` (set by the subclass).

    Renewal is shared by concurrent callers and survives a caller giving up;
    see `image_gate.clouds._common.Refresher`.
    """

    _refresher: Refresher[C]

    @property
    def refreshes(self) -> int:
        """How many times the credential service was asked (for tests and metrics)."""
        return self._refresher.refreshes

    async def credentials(self) -> C:
        return await self._refresher.get()

    async def wait_idle(self) -> None:
        """Wait for a renewal running in the background, if any (for tests)."""
        await self._refresher.wait_idle()

    def invalidate(self) -> None:
        """The cloud refused the credentials: renew them before the next use."""
        self._refresher.invalidate()


def read_token_file(path: Path, what: str) -> str:
    """The token in ``path``, read afresh (the kubelet rotates it); `CredentialsError` naming ``what``."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    if not token:
        raise CredentialsError(f"{what} {str(path)!r} is empty")
    return token


def mask(key_id: str) -> str:
    """At most the first four characters of a key id (``LTAI****``): enough to tell keys apart, not to use one."""
    return f"{key_id[:_SHOWN]}****" if len(key_id) >= _SHORTEST_SHOWN else "****"


def any_set(environ: Mapping[str, str], names: Iterable[str]) -> bool:
    """Whether any of these variables is set to something other than blanks."""
    return any(environ.get(name, "").strip() for name in names)
