"""
Alibaba Cloud request signing, V3 (``ACS3-HMAC-SHA256``), as an `httpx.Auth`.

The algorithm is the one of the official util (``alibabacloud_openapi_util``
``Client.get_authorization``; the same code ships in
``alibabacloud_tea_openapi.utils``) and the "V3 request structure and
signature" page::

    CanonicalRequest = Method \\n CanonicalURI \\n CanonicalQueryString \\n
                       CanonicalHeaders (each "name:value\\n") \\n SignedHeaders \\n HashedPayload
    StringToSign     = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(AccessKeySecret, StringToSign))
    Authorization    = "ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<...>,Signature=<...>"

Details that decide whether a gateway agrees:

* Query values are percent-encoded per RFC 3986 (space ``%20``, ``*``
  ``%2A``, ``~`` kept, ``/`` ``%2F``), pairs sorted by key, an empty value
  kept as ``key=``. The request then carries *that* string on the wire, so
  the gateway decodes exactly what was signed.
* Header values are trimmed; repeated headers are joined with ``,`` after
  sorting their values. We sign ``host``, ``content-type`` when there is one,
  and every ``x-acs-*`` header (the Go util's choice): the gateway recomputes
  from our ``SignedHeaders``, and leaving out headers that proxies and
  transports add or change (``accept-encoding``, ``connection``) keeps a
  signature valid across them.
* ``x-acs-date`` (UTC, second precision) comes from an injected wall clock
  and ``x-acs-signature-nonce`` from an injectable source, so tests reproduce
  published vectors; in production the nonce is 128 random bits.

`AliyunSigner.sign` is pure and synchronous; the async flow first asks the
credential provider for a credential, which may renew STS credentials (I/O).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

import httpx

from image_gate.clouds._common import WallClock
from image_gate.clouds.aliyun.credentials import AliyunCredential, AliyunCredentialsProvider, StaticCredentials

__all__ = [
    "ALGORITHM",
    "EMPTY_PAYLOAD_SHA256",
    "AliyunSigner",
    "acs_date",
    "authorization_header",
    "canonical_headers",
    "canonical_query_string",
    "canonical_request",
    "is_signed_header",
    "percent_encode",
    "query_pairs",
    "random_nonce",
    "sign_string",
    "string_to_sign",
]

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(text: str) -> str:
    """RFC 3986 percent-encoding of UTF-8: only ``A-Z a-z 0-9 - _ . ~`` stay as they are."""
    return quote(text, safe="~", encoding="utf-8")


def canonical_query_string(params: Mapping[str, str | None] | Iterable[tuple[str, str]]) -> str:
    """``k=v`` pairs, percent-encoded and sorted by key, joined with ``&``.

    A mapping may hold None values, which are left out (as the official util
    does); an empty string is kept as ``key=``. Keys are sorted before encoding,
    as the util does; API parameter names are unreserved characters anyway.
    """
    if isinstance(params, Mapping):
        pairs = [(key, value) for key, value in params.items() if value is not None]
    else:
        pairs = list(params)
    pairs.sort()
    return "&".join(f"{percent_encode(key)}={percent_encode(value)}" for key, value in pairs)


def is_signed_header(name: str) -> bool:
    """Whether we sign a header: ``host``, ``content-type`` and the ``x-acs-*`` family."""
    name = name.lower()
    return name in ("host", "content-type") or name.startswith("x-acs-")


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The canonical header block (each line ending in ``\\n``) and the ``SignedHeaders`` list.

    Every header given is signed: choose them before calling (see `is_signed_header`).
    """
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value.strip())
    names = sorted(grouped)
    block = "".join(f"{name}:{','.join(sorted(grouped[name]))}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str, path: str, query: str, header_block: str, signed_headers: str, payload_sha256: str
) -> str:
    return f"{method.upper()}\n{path or '/'}\n{query}\n{header_block}\n{signed_headers}\n{payload_sha256}"


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def sign_string(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization_header(access_key_id: str, signed_headers: str, signature: str) -> str:
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"


def acs_date(epoch_seconds: float) -> str:
    """``x-acs-date``: UTC ISO 8601 to the second, ``2023-10-26T10:22:32Z``."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_nonce() -> str:
    """A fresh ``x-acs-signature-nonce``: 32 hex digits, like the SDK's."""
    return secrets.token_hex(16)


def query_pairs(raw_query: bytes | str) -> list[tuple[str, str]]:
    """Decode a query string into pairs, as a gateway does (``+`` is a space, blanks kept)."""
    text = raw_query.decode("ascii") if isinstance(raw_query, bytes) else raw_query
    return parse_qsl(text, keep_blank_values=True)


class AliyunSigner(httpx.Auth):
    """Signs each request with ``ACS3-HMAC-SHA256``.

    The request must already carry ``x-acs-action`` and ``x-acs-version`` (the
    client sets them per API); the signer adds ``x-acs-date``,
    ``x-acs-signature-nonce``, ``x-acs-content-sha256``, ``x-acs-security-token``
    for STS credentials, and ``Authorization``, and rewrites the query string
    into its canonical form.

    With an `AliyunCredentialsProvider` the signer asks it for a credential on every
    request (cheap while the credential is fresh), so it works in
    `httpx.AsyncClient`; in a synchronous `httpx.Client` only fixed credentials
    can be used.
    """

    requires_request_body = True

    def __init__(
        self,
        credentials: AliyunCredential | AliyunCredentialsProvider,
        *,
        clock: WallClock = time.time,
        nonce: Callable[[], str] = random_nonce,
    ) -> None:
        self._provider: AliyunCredentialsProvider = (
            StaticCredentials(credentials) if isinstance(credentials, AliyunCredential) else credentials
        )
        self._clock = clock
        self._nonce = nonce

    @property
    def provider(self) -> AliyunCredentialsProvider:
        return self._provider

    def sign(self, request: httpx.Request, credential: AliyunCredential) -> None:
        """Sign ``request`` in place. Its body must have been read."""
        headers = request.headers
        headers["x-acs-date"] = acs_date(self._clock())
        headers["x-acs-signature-nonce"] = self._nonce()
        payload_sha256 = hashlib.sha256(request.content).hexdigest()
        headers["x-acs-content-sha256"] = payload_sha256
        if credential.security_token:
            headers["x-acs-security-token"] = credential.security_token
        else:
            headers.pop("x-acs-security-token", None)
        headers.pop("authorization", None)

        query = canonical_query_string(query_pairs(request.url.query))
        request.url = request.url.copy_with(query=query.encode("ascii") or None)

        header_block, signed = canonical_headers(
            (name, value) for name, value in headers.multi_items() if is_signed_header(name)
        )
        canonical = canonical_request(
            request.method,
            request.url.raw_path.split(b"?", 1)[0].decode("ascii"),
            query,
            header_block,
            signed,
            payload_sha256,
        )
        signature = sign_string(credential.access_key_secret, string_to_sign(canonical))
        headers["authorization"] = authorization_header(credential.access_key_id, signed, signature)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not isinstance(self._provider, StaticCredentials):
            raise RuntimeError("renewable Alibaba Cloud credentials need an httpx.AsyncClient")
        self.sign(request, self._provider.credential)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        credential = await self._provider.credentials()
        await request.aread()
        self.sign(request, credential)
        yield request
