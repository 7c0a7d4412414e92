"""Fuzz target 4: cloud answers.

The HSS and SAS clients, real (signing, quota, retries, classification), against a generated cloud
(`tests.fuzz.answers.GeneratedCloud`): any status, headers and body, answers shaped like the documented
ones with any field replaced by anything, deeply nested JSON, bodies that are not JSON, refused and cut
connections, and answers that never come. Every lookup returns an outcome (`Found`, `NotFound`, or a
`Failure`) and never raises, and returns within its deadline (plus a margin for a loaded machine).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st

from image_gate.clouds.aliyun import AcrRepository, AliyunCredential, SasClient
from image_gate.clouds.huawei import HssClient, HuaweiCredentials, HuaweiSigner, RegistryImage
from image_gate.clouds.quota import Rate
from image_gate.clouds.retry import RetryPolicy
from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.core.locations import AcrLocation, HssLocation
from image_gate.core.outcomes import BaseImage, Failure, Found, NotFound
from tests.fuzz.answers import CUT_OFF, NEVER, REFUSED, GeneratedCloud, Reply
from tests.fuzz.cases import count, fuzz
from tests.image_strategies import images

DEADLINE = 0.2
"""Each lookup's deadline: short, so that answers that never come cost little."""
MARGIN = 1.0
"""How late past the deadline a lookup may return on a loaded machine (the loop's own delays)."""
FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)
PLENTY = Rate(1_000_000, 1.0)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
HEX = "ab" * 32

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the documented shape, sometimes anything at all."""
    return st.one_of(value, value, value, JSON)


def _document(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={**fields, "Unexpected": JSON})


_TEXTS = st.sampled_from(["shop", "web", "1.0", "latest", "cn-north-4", "cn-hangzhou", "", "scanned", "unscan"])
_DIGESTS = st.sampled_from([f"sha256:{HEX}", HEX, HEX.upper(), f"SHA256:{HEX}", "sha256:abc", f"sha512:{'c' * 128}"])
_HSS_ROW = _document(
    {
        key: _maybe(_TEXTS)
        for key in ("image_id", "namespace", "image_name", "image_version", "image_type", "scan_status")
    }
    | {"image_digest": _maybe(_DIGESTS)}
)
_HSS_BASE = _document({"os_name": _maybe(_TEXTS), "os_version": _maybe(_TEXTS), "layer_digest": _maybe(_DIGESTS)})
_HSS_BODIES = _document(
    {
        "data_list": _maybe(st.lists(_maybe(_HSS_ROW | _HSS_BASE), max_size=3)),
        "total_num": _maybe(st.integers(-1, 10_000)),
        "projects": _maybe(st.lists(_maybe(_document({"id": _maybe(_TEXTS), "name": _maybe(_TEXTS)})), max_size=3)),
        "error_code": _maybe(st.sampled_from(["HSS.1001", "APIGW.0301", "APIGW.0308", "IAM.0001", "HSS.0004"])),
        "error_msg": _maybe(st.text(max_size=30)),
        "request_id": _maybe(st.text(max_size=10)),
    }
)
_SAS_ROW = _document({key: _maybe(_TEXTS) for key in ("RepoNamespace", "RepoName", "RegionId", "InstanceId", "RepoId")})
_SAS_BODIES = _document(
    {
        "ImageInstanceList": _maybe(st.lists(_maybe(_SAS_ROW), max_size=3)),
        "PageInfo": _maybe(_document({"TotalCount": _maybe(st.integers(-1, 10_000))})),
        "Data": _maybe(_document({"Digest": _maybe(_DIGESTS)})),
        "RequestId": _maybe(st.text(max_size=10)),
        "Code": _maybe(st.sampled_from(["Throttling.User", "InvalidAccessKeyId.NotFound", "SignatureDoesNotMatch"])),
        "Message": _maybe(st.text(max_size=30)),
    }
)
_DEEP = st.builds(
    lambda depth, opener: (opener * depth).encode(), st.integers(100, 100_000), st.sampled_from(["[", '{"a":'])
)
_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(["Retry-After", "X-Request-Id", "Content-Type", "x-acs-request-id", "X-Ratelimit-Reset"]),
        _HEADER_TEXT
        | st.sampled_from(["0", "-1", "1e9", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"]),
    ),
    max_size=3,
).map(tuple)
_STATUSES = st.sampled_from(
    [200] * 10 + [201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504]
) | st.integers(100, 599)


def _replies(documents: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[Reply]]:
    body = st.one_of(
        documents.map(lambda document: json.dumps(document).encode()),
        documents.map(lambda document: json.dumps(document).encode()),
        JSON.map(lambda document: json.dumps(document).encode()),
        _DEEP,
        st.binary(max_size=100),
    )
    answer = st.builds(Reply, status=_STATUSES, headers=_HEADERS, body=body)
    no_answer = st.builds(Reply, failure=st.sampled_from([REFUSED, CUT_OFF]))
    never = st.just(Reply(failure=NEVER))  # costs a whole deadline: rarer than the others
    return st.lists(
        st.sampled_from([answer] * 60 + [no_answer] * 8 + [never]).flatmap(lambda reply: reply), min_size=1, max_size=4
    )


async def _within_deadline(lookup: Callable[[Deadline], Awaitable[object]]) -> object:
    started = time.monotonic()
    outcome = await lookup(Deadline.after(DEADLINE))
    took = time.monotonic() - started
    assert took < DEADLINE + MARGIN, f"{took:.2f}s"
    assert isinstance(outcome, Found | NotFound | Failure), outcome
    event(type(outcome).__name__)
    return outcome


async def _hss_lookups(cloud: GeneratedCloud, image: ImageReference, location: HssLocation) -> None:
    signer = HuaweiSigner(HuaweiCredentials(ak="fuzz-ak", sk="fuzz-sk"))
    endpoint = "https://hss.fuzz.invalid"
    async with HssClient(
        signer, endpoint=endpoint, iam_endpoint=endpoint, transport=cloud, rate=PLENTY, retry=FAST_RETRIES
    ) as client:
        found = await _within_deadline(lambda deadline: client.find_image(image, location, deadline=deadline))
        if isinstance(found, Found):
            assert isinstance(found.value, RegistryImage)
            listed = found.value
        else:
            listed = RegistryImage("id-1", None, image.namespace, image.short_name, "1.0", "private_image", None)
        base = await _within_deadline(lambda deadline: client.base_image(listed, location, deadline=deadline))
        if isinstance(base, Found):
            assert isinstance(base.value, BaseImage)
            assert all(isinstance(text, str) for text in (base.value.os_name, base.value.os_version))


_DEEPLY_NESTED = [Reply(body=b"[" * 100_000)]
"""Found by this target: json's RecursionError escaped every lookup (clouds/_common.json_object), so it stays."""
_HSS_IMAGES = st.sampled_from(
    [
        "swr.cn-north-4.myhuaweicloud.com/shop/web:1.0",
        "swr.cn-north-4.myhuaweicloud.com/shop/web:latest",
        f"swr.cn-north-4.myhuaweicloud.com/shop/web:1.0@sha256:{HEX}",
        f"swr.cn-north-4.myhuaweicloud.com/shop/web@sha256:{HEX}",
    ]
)
"""Images whose names the generated answers use, so that rows match and the Found paths run too."""


@fuzz(900)
@example(
    replies=_DEEPLY_NESTED, image="swr.cn-north-4.myhuaweicloud.com/shop/web:1.0", project=None, enterprise_project=None
)
@given(
    replies=_replies(_HSS_BODIES),
    image=images().map(lambda image: image.text) | _HSS_IMAGES,
    project=st.sampled_from([None, "p-1"]),
    enterprise_project=st.sampled_from([None, "all_granted_eps"]),
)
def test_hss_lookups_end_in_an_outcome_within_the_deadline(
    replies: list[Reply], image: str, project: str | None, enterprise_project: str | None
) -> None:
    count("clouds: HSS answers")
    location = HssLocation("cn-north-4", "private_image", project_id=project, enterprise_project_id=enterprise_project)
    asyncio.run(_hss_lookups(GeneratedCloud(replies), ImageReference.parse(image), location))


async def _sas_lookups(cloud: GeneratedCloud, image: ImageReference, location: AcrLocation) -> None:
    credential = AliyunCredential(access_key_id="fuzz-key", access_key_secret="fuzz-secret")
    async with SasClient(
        credential, endpoint="https://sas.fuzz.invalid", transport=cloud, rate=PLENTY, retry=FAST_RETRIES
    ) as client:
        found = await _within_deadline(lambda deadline: client.find_repository(image, location, deadline=deadline))
        if isinstance(found, Found):
            assert isinstance(found.value, AcrRepository)
            repository = found.value
        else:
            repository = AcrRepository("cn-hangzhou", "cri-1", "repo-1", image.namespace, image.short_name)
        digest = await _within_deadline(
            lambda deadline: client.registry_digest(repository, image.tag or "latest", deadline=deadline)
        )
        if isinstance(digest, Found):
            assert isinstance(digest.value, str)
            assert digest.value.startswith("sha"), digest.value


_SAS_IMAGES = st.sampled_from(
    [
        "shop-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:1.0",
        f"shop-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:latest@sha256:{HEX}",
    ]
)


@fuzz(900)
@example(replies=_DEEPLY_NESTED, image="shop-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:1.0", instance=None)
@given(
    replies=_replies(_SAS_BODIES),
    image=images().map(lambda image: image.text) | _SAS_IMAGES,
    instance=st.sampled_from([None, "cri-1", "web"]),
)
def test_sas_lookups_end_in_an_outcome_within_the_deadline(
    replies: list[Reply], image: str, instance: str | None
) -> None:
    count("clouds: SAS answers")
    location = AcrLocation("cn-hangzhou", instance_id=instance)
    asyncio.run(_sas_lookups(GeneratedCloud(replies), ImageReference.parse(image), location))
