"""
``SDK-HMAC-SHA256``: the request signature Huawei Cloud's API gateway checks.

This computes, byte for byte, what ``huaweicloudsdkcore.signer.signer.Signer``
computes (the official Python SDK, release 3.1.x), which is also what the
gateway recomputes from the request it receives:

1. SignedHeaders: every header whose name has no ``_``, lowercased and sorted.
2. CanonicalRequest: the method; the path, percent-decoded, then each segment
   encoded with only ``A-Za-z0-9-._~`` left as is, with a trailing ``/``; the
   query pairs, sorted on their decoded (name, value), encoded the same way;
   ``name:value`` of each signed header with the value stripped; the
   SignedHeaders; the hex SHA-256 of the body (or ``X-Sdk-Content-Sha256``).
3. StringToSign: ``SDK-HMAC-SHA256``, ``X-Sdk-Date``, hex SHA-256 of (2).
4. Signature: hex HMAC-SHA256 of (3) keyed with the SK itself.

The SDK also sends the canonical query string on the wire, so that the
gateway decodes exactly the pairs that were signed; `HuaweiSigner` does the
same. The functions below are shared with cloudsim, which verifies signatures
with them exactly as the gateway would.

Two deliberate differences from signing "every header" of an httpx request:
hop-by-hop headers, ``Content-Length`` and ``Accept-Encoding`` are left out of
SignedHeaders. The SDK never signs them either (``requests`` adds them after
signing), and proxies may legitimately change them in transit.

One difference from the SDK that cannot arise from an httpx request: the SDK
sorts a list-valued parameter by its Python values (``[10, 9]`` as numbers),
while an httpx query is already text and sorts as text. HSS has no
list-valued parameters.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

import httpx

from image_gate.clouds._common import WallClock
from image_gate.clouds.huawei.credentials import HuaweiCredentials, HuaweiCredentialsProvider, StaticCredentials

__all__ = [
    "ALGORITHM",
    "EMPTY_BODY_SHA256",
    "SDK_DATE_FORMAT",
    "HuaweiSigner",
    "ParsedAuthorization",
    "authorization_header",
    "canonical_headers",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "format_sdk_date",
    "header_values",
    "parse_authorization",
    "parse_query",
    "parse_sdk_date",
    "payload_hash",
    "signable_headers",
    "signature",
    "string_to_sign",
]

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

# Headers that intermediaries add, drop or rewrite, and that the SDK never signs.
_UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
    }
)


def _encode(text: str) -> str:
    return quote(text, safe="~")


def format_sdk_date(epoch_seconds: float) -> str:
    """``X-Sdk-Date`` for a wall-clock time: ``20191115T033655Z`` (UTC)."""
    return time.strftime(SDK_DATE_FORMAT, time.gmtime(epoch_seconds))


def parse_sdk_date(text: str) -> float:
    """Seconds since the epoch for an ``X-Sdk-Date`` value; `ValueError` when it is not one."""
    return float(calendar.timegm(time.strptime(text, SDK_DATE_FORMAT)))


def canonical_uri(raw_path: str) -> str:
    """The path as signed: decoded, each segment re-encoded, always ending in ``/``."""
    path = "/".join(_encode(segment) for segment in unquote(raw_path).split("/"))
    return path if path.endswith("/") else path + "/"


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The decoded (name, value) pairs of a raw query string, blanks kept (``a=`` and ``a`` are ``("a", "")``)."""
    return parse_qsl(raw_query, keep_blank_values=True)


def canonical_query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """Pairs sorted on their decoded text, each side encoded: also what goes on the wire."""
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sorted(pairs))


def header_values(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lowercased name -> stripped value, as the signer sees headers.

    Values are UTF-8 on the wire (the SDK sends ``value.encode("utf-8")``);
    anything else is read as Latin-1 rather than refused. A repeated header is
    joined with ``,`` (the SDK holds headers in a dict, so never repeats one).
    """
    values: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        value = value.strip()
        values[name] = f"{values[name]},{value}" if name in values else value
    return values


def signable_headers(names: Iterable[str]) -> list[str]:
    """The lowercased header names a signer puts in SignedHeaders, sorted."""
    return sorted({name.lower() for name in names if "_" not in name and name.lower() not in _UNSIGNED_HEADERS})


def canonical_headers(values: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header; `KeyError` names a signed header that is missing."""
    return "".join(f"{name}:{values[name]}\n" for name in signed_headers)


def payload_hash(body: bytes, content_sha256: str | None = None) -> str:
    """Hex SHA-256 of the body; an empty body hashes as empty even with ``X-Sdk-Content-Sha256`` (as in the SDK)."""
    if not body:
        return EMPTY_BODY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    values: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The CanonicalRequest for a request as it travels (raw path, decoded query pairs, header values)."""
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query_string(query),
            canonical_headers(values, signed_headers),
            ";".join(signed_headers),
            payload_hash(body, values.get("x-sdk-content-sha256")),
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization_header(access_key: str, signed_headers: Sequence[str], signature_hex: str) -> str:
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed_headers)}, Signature={signature_hex}"


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The three fields of an ``SDK-HMAC-SHA256`` Authorization header."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an Authorization header as the gateway does; `ValueError` says what is wrong with it."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"the signing algorithm is not {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or not field_value:
            raise ValueError("the Authorization header is not 'Access=..., SignedHeaders=..., Signature=...'")
        fields[name] = field_value
    missing = [name for name in ("Access", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise ValueError(f"the Authorization header has no {', '.join(missing)}")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if list(signed) != sorted(set(signed)) or any(not name or name != name.lower() for name in signed):
        raise ValueError("SignedHeaders must be lowercase header names, sorted, separated by ';'")
    return ParsedAuthorization(fields["Access"], signed, fields["Signature"])


class HuaweiSigner(httpx.Auth):
    """Signs each request with ``SDK-HMAC-SHA256``, as the Huawei Cloud SDK does.

    Before signing it adds, as the SDK does: ``X-Project-Id`` (when the
    credentials name a project and the request has none), ``X-Security-Token``
    (temporary credentials), ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` (a body
    that is neither JSON nor BSON), and ``X-Sdk-Date`` from the injected wall
    clock (unless the request carries one). It then replaces the query string
    with its canonical form, so the gateway decodes what was signed.

    ``credentials`` is either fixed `HuaweiCredentials` (then the signer also
    works with a synchronous ``httpx.Client``, e.g. to check test vectors) or
    a `HuaweiCredentialsProvider` that may renew temporary credentials (async only).
    """

    requires_request_body = True

    def __init__(
        self,
        credentials: HuaweiCredentials | HuaweiCredentialsProvider,
        *,
        clock: WallClock = time.time,
    ) -> None:
        self._static = credentials if isinstance(credentials, HuaweiCredentials) else None
        self.provider: HuaweiCredentialsProvider = (
            StaticCredentials(credentials) if isinstance(credentials, HuaweiCredentials) else credentials
        )
        self._clock = clock

    def __repr__(self) -> str:
        return f"HuaweiSigner({self.provider!r})"

    async def current(self) -> HuaweiCredentials:
        """The credentials the next request will be signed with (renewed first when needed)."""
        return await self.provider.credentials()

    async def aclose(self) -> None:
        await self.provider.aclose()

    def sign(self, request: httpx.Request, credentials: HuaweiCredentials) -> httpx.Request:
        """Add the SDK's headers and the Authorization header, and canonicalise the query (in place)."""
        headers = request.headers
        headers.pop("Authorization", None)
        if credentials.project_id and "X-Project-Id" not in headers:
            headers["X-Project-Id"] = credentials.project_id
        if credentials.security_token:
            headers["X-Security-Token"] = credentials.security_token
        content_type = headers.get("Content-Type")
        if content_type and not content_type.startswith(("application/json", "application/bson")):
            headers["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
        if "X-Sdk-Date" in headers:
            sdk_date = format_sdk_date(parse_sdk_date(headers["X-Sdk-Date"]))
        else:
            sdk_date = format_sdk_date(self._clock())
            headers["X-Sdk-Date"] = sdk_date
        if "Host" not in headers:
            headers["Host"] = request.url.netloc.decode("ascii")

        raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
        query = parse_query(raw_query)
        values = header_values(headers.raw)
        signed = signable_headers(values)
        canonical = canonical_request(request.method, raw_path, query, values, signed, request.content)
        headers["Authorization"] = authorization_header(
            credentials.ak, signed, signature(credentials.sk, string_to_sign(canonical, sdk_date))
        )
        request.url = request.url.copy_with(query=canonical_query_string(query).encode("ascii") or None)
        return request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._static is None:
            raise RuntimeError("renewable credentials need an httpx.AsyncClient; a sync client signs fixed ones")
        request.read()
        yield self.sign(request, self._static)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        credentials = await self.provider.credentials()
        yield self.sign(request, credentials)
