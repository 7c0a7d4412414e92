"""HssClient against cloudsim's HSS over real HTTPS on 127.0.0.1: lookups, faults, quota, auth, no leaked secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudsim.catalogue import Catalogue
from cloudsim.faults import Fault
from cloudsim.hss_auth import DEFAULT_IAM_USERS
from cloudsim.server import SimState, Simulators
from image_gate.clouds.huawei import (
    API_BASE_IMAGE,
    API_LIST_IMAGES,
    API_LIST_PROJECTS,
    HssClient,
    HuaweiCredentials,
    HuaweiSigner,
    IamPassword,
    IamTokenAuth,
    PodIdentityCredentials,
    RegistryImage,
)
from image_gate.clouds.quota import Rate
from image_gate.clouds.retry import RetryPolicy
from image_gate.core import outcomes
from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.facts.registries import HssLocation
from tests.recorder import Recorder
from tests.tlsutil import TestPki

CATALOGUE = Catalogue.load()
AKSK = CATALOGUE.huawei_credentials[0]
TEMPORARY = next(c for c in CATALOGUE.huawei_credentials if c.security_token)
PROJECT = AKSK.project_id
LOCATION = HssLocation(region="cn-north-4", image_type="private_image")
PINNED = HssLocation(region="cn-north-4", image_type="private_image", project_id=PROJECT)
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
IAM_USER = DEFAULT_IAM_USERS[0]


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def _simulators(pki: TestPki, catalogue: Catalogue = CATALOGUE, *, hss_rate: Rate | None = None) -> Simulators:
    state = SimState(catalogue=catalogue, hss_rate=hss_rate)
    return Simulators(catalogue, ssl_context=pki.server_context(), state=state)


@pytest.fixture
def sim(pki: TestPki) -> Iterator[Simulators]:
    with _simulators(pki) as simulators:
        yield simulators


ClientFactory = Callable[..., HssClient]


@pytest.fixture
async def make_client(sim: Simulators, pki: TestPki) -> AsyncIterator[ClientFactory]:
    clients: list[HssClient] = []

    def make(auth: Any = None, **options: Any) -> HssClient:
        if auth is None:
            auth = HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk))
        options.setdefault("endpoint", sim.hss_url)
        options.setdefault("iam_endpoint", sim.hss_url)
        options.setdefault("verify", pki.ca_file)
        options.setdefault("rate", Rate(1000, 1.0))
        options.setdefault("retry", FAST_RETRY)
        client = HssClient(auth, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def deadline(seconds: float = 5.0) -> Deadline:
    return Deadline.after(seconds)


async def lookup_base_image(
    client: HssClient, image: ImageReference, location: HssLocation, *, deadline: Deadline
) -> outcomes.Outcome[outcomes.BaseImage]:
    """`HssClient.find_image` then `HssClient.base_image`, within one deadline, as the resolver chains them."""
    found = await client.find_image(image, location, deadline=deadline)
    if not isinstance(found, outcomes.Found):
        return found
    return await client.base_image(found.value, location, deadline=deadline)


# -- the catalogue resolves ---------------------------------------------------------------------------


async def test_every_scanned_catalogue_image_resolves_by_tag(make_client: ClientFactory) -> None:
    client = make_client()
    for image in CATALOGUE.huawei_images():
        assert image.huawei is not None
        outcome = await lookup_base_image(client, image.reference, LOCATION, deadline=deadline())
        if image.huawei.base_image is None:
            assert isinstance(outcome, outcomes.NotFound), outcome
            assert outcome.detail == (
                f"HSS has no base image information for {image.reference.namespace}/{image.reference.short_name}"
                f":{image.reference.tag}; scan status: unscan"
            )
        else:
            assert outcome == outcomes.Found(image.huawei.base_image, request_id=outcome.request_id), image.reference
            assert outcome.request_id


async def test_compliant_and_non_compliant_samples(make_client: ClientFactory) -> None:
    client = make_client()
    ubuntu = await lookup_base_image(
        client, ref("swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"), LOCATION, deadline=deadline()
    )
    centos = await lookup_base_image(
        client, ref("swr.cn-north-4.myhuaweicloud.com/demo/legacy-batch:2.3.0"), LOCATION, deadline=deadline()
    )
    assert isinstance(ubuntu, outcomes.Found)
    assert (ubuntu.value.os_name, ubuntu.value.os_version) == ("Ubuntu", "22.04")
    assert isinstance(centos, outcomes.Found)
    assert (centos.value.os_name, centos.value.os_version) == ("CentOS Linux", "7.9.2009")


@pytest.mark.parametrize("tag", ["1.4.2", "1.4.1"])  # listed with and without the sha256: prefix
async def test_digest_reference_resolves_on_the_digest(make_client: ClientFactory, tag: str) -> None:
    image = next(i for i in CATALOGUE.huawei_images() if str(i.reference).endswith(f"/demo/api:{tag}"))
    assert image.huawei is not None
    client = make_client()
    found = await client.find_image(
        ref(f"swr.cn-north-4.myhuaweicloud.com/demo/api@{image.digest}"), LOCATION, deadline=deadline()
    )
    assert isinstance(found, outcomes.Found)
    assert found.value == RegistryImage(
        image_id=image.huawei.image_id,
        digest=image.digest,
        namespace="demo",
        image_name="api",
        image_version=tag,
        image_type="private_image",
        scan_status="success",
    )
    # A tag that disagrees with the digest: the digest is what the node pulls, so it wins.
    pinned = await lookup_base_image(
        client, ref(f"swr.cn-north-4.myhuaweicloud.com/demo/api:0.0.1@{image.digest}"), LOCATION, deadline=deadline()
    )
    assert pinned == outcomes.Found(
        image.huawei.base_image, request_id=pinned.request_id if isinstance(pinned, outcomes.Found) else None
    )


async def test_loose_server_filters_are_matched_exactly(make_client: ClientFactory) -> None:
    client = make_client()
    # "ap" is a substring of "api" and "api-gateway": the simulator lists both, the client must take neither.
    outcome = await client.find_image(
        ref("swr.cn-north-4.myhuaweicloud.com/demo/ap:1.4.2"), LOCATION, deadline=deadline()
    )
    assert isinstance(outcome, outcomes.NotFound)
    assert "HSS has not synced this image; sync the registry in HSS" in outcome.detail
    unknown_digest = "sha256:" + "0" * 64
    outcome = await client.find_image(
        ref(f"swr.cn-north-4.myhuaweicloud.com/demo/api@{unknown_digest}"), LOCATION, deadline=deadline()
    )
    assert isinstance(outcome, outcomes.NotFound)
    assert unknown_digest in outcome.detail


async def test_project_id_is_found_in_iam_once(sim: Simulators, make_client: ClientFactory) -> None:
    client = make_client()
    for tag in ("1.4.2", "1.4.1"):
        outcome = await lookup_base_image(
            client, ref(f"swr.cn-north-4.myhuaweicloud.com/demo/api:{tag}"), LOCATION, deadline=deadline()
        )
        assert isinstance(outcome, outcomes.Found)
    assert sim.state.faults.calls[API_LIST_PROJECTS] == 1
    # A project in the location, or in the credentials, needs no IAM call at all.
    worker = ref("swr.cn-north-4.myhuaweicloud.com/demo/worker:3.1.0")
    assert isinstance(await make_client().find_image(worker, PINNED, deadline=deadline()), outcomes.Found)
    with_project = make_client(HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk, project_id=PROJECT)))
    assert isinstance(await with_project.find_image(worker, LOCATION, deadline=deadline()), outcomes.Found)
    assert sim.state.faults.calls[API_LIST_PROJECTS] == 1


def _catalogue(*references: str) -> Catalogue:
    """A catalogue of these SWR images, all scanned, in this order, for the demo's first AK/SK."""
    images = [
        {
            "reference": reference,
            "digest": f"sha256:{index + 1:064x}",
            "huawei": {"base_image": {"os_name": "Debian GNU/Linux", "os_version": "12", "layer_digest": ""}},
        }
        for index, reference in enumerate(references)
    ]
    credentials = [{"ak": AKSK.ak, "sk": AKSK.sk, "project_id": PROJECT}]
    return Catalogue.from_dict({"credentials": {"huawei": credentials}, "images": images})


async def test_pages_are_followed_for_a_tag(pki: TestPki) -> None:
    # The name filter is a substring: "app" lists app-gateway:1.0 first, then app:1.0, one a page.
    catalogue = _catalogue(
        "swr.cn-north-4.myhuaweicloud.com/team/app-gateway:1.0", "swr.cn-north-4.myhuaweicloud.com/team/app:1.0"
    )
    app = ref("swr.cn-north-4.myhuaweicloud.com/team/app:1.0")
    signer = HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk))
    with _simulators(pki, catalogue) as sim:
        async with HssClient(signer, endpoint=sim.hss_url, verify=pki.ca_file, page_size=1) as client:
            outcome = await client.find_image(app, PINNED, deadline=deadline())
            assert isinstance(outcome, outcomes.Found)
            assert outcome.value.image_name == "app"
            assert sim.state.faults.calls[API_LIST_IMAGES] == 2
        # With too few pages allowed, the answer says so.
        signer = HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk))
        async with HssClient(signer, endpoint=sim.hss_url, verify=pki.ca_file, page_size=1, max_pages=1) as client:
            outcome = await client.find_image(app, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.NotFound)
    assert "stopped after 1 pages" in outcome.detail


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_digest_costs_one_call_at_most_and_its_page_answers_the_repositorys_next_digests(
    sim: Simulators, make_client: ClientFactory
) -> None:
    # By digest the list is not filtered by tag: api:1.4.2, api:1.4.1 and api-gateway:1.4.2, one a page here.
    latest, previous = (
        next(i for i in CATALOGUE.huawei_images() if str(i.reference).endswith(f"/demo/api:{tag}"))
        for tag in ("1.4.2", "1.4.1")
    )
    clock = FakeClock()
    client = make_client(page_size=1, clock=clock, listing_ttl=30.0)

    def by_digest(digest: str) -> ImageReference:
        return ref(f"swr.cn-north-4.myhuaweicloud.com/demo/api@{digest}")

    # api:1.4.1 is on the second page: not read, and the answer says why.
    outcome = await client.find_image(by_digest(previous.digest), PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.NotFound)
    assert "HSS lists 3 images of demo/api" in outcome.detail
    assert "not among the 1 on the one page read for a digest" in outcome.detail
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1
    # The page answers the repository's other digests, known or not, without a call ...
    found = await client.find_image(by_digest(latest.digest), PINNED, deadline=deadline())
    assert isinstance(found, outcomes.Found)
    assert found.value.image_version == "1.4.2"
    for index in range(20):
        unknown = await client.find_image(by_digest(f"sha256:{index:064x}"), PINNED, deadline=deadline())
        assert isinstance(unknown, outcomes.NotFound)
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1
    # ... until it is listing_ttl old: then one call again.
    clock.now += 30.0
    unknown = await client.find_image(by_digest("sha256:" + "f" * 64), PINNED, deadline=deadline())
    assert isinstance(unknown, outcomes.NotFound)
    assert sim.state.faults.calls[API_LIST_IMAGES] == 2
    # With HSS's page of 200, api:1.4.1 is found, in one call.
    found = await make_client().find_image(by_digest(previous.digest), PINNED, deadline=deadline())
    assert isinstance(found, outcomes.Found)
    assert found.value.image_version == "1.4.1"
    assert sim.state.faults.calls[API_LIST_IMAGES] == 3


# -- every fault maps to its outcome --------------------------------------------------------------------

API_REF = ref("swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2")


async def test_latency_within_the_deadline_is_found(sim: Simulators, make_client: ClientFactory) -> None:
    sim.state.faults.add(Fault(api=API_BASE_IMAGE, kind="latency", seconds=0.4))
    outcome = await lookup_base_image(make_client(), API_REF, PINNED, deadline=deadline(3.0))
    assert isinstance(outcome, outcomes.Found)


async def test_timeout_is_timed_out_within_the_deadline(sim: Simulators, make_client: ClientFactory) -> None:
    sim.state.faults.add(Fault(api=API_LIST_IMAGES, kind="timeout"))
    started = time.monotonic()
    outcome = await lookup_base_image(make_client(), API_REF, PINNED, deadline=deadline(1.0))
    elapsed = time.monotonic() - started
    assert isinstance(outcome, outcomes.TimedOut), outcome
    assert outcome.api == API_LIST_IMAGES
    assert elapsed < 1.5


async def test_server_error_is_unavailable_after_retries(sim: Simulators, make_client: ClientFactory) -> None:
    sim.state.faults.add(Fault(api=API_LIST_IMAGES, kind="error", status=500))
    recorder = Recorder()
    outcome = await make_client(observer=recorder).find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unavailable)
    assert outcome.code == "SYS.0500"
    assert outcome.request_id
    assert sim.state.faults.calls[API_LIST_IMAGES] == FAST_RETRY.attempts
    assert recorder.calls == [(API_LIST_IMAGES, "unavailable")] * FAST_RETRY.attempts


async def test_one_server_error_is_retried_away(sim: Simulators, make_client: ClientFactory) -> None:
    sim.state.faults.add(Fault(api=API_BASE_IMAGE, kind="error", status=503, times=1))
    outcome = await lookup_base_image(make_client(), API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Found)
    assert sim.state.faults.calls[API_BASE_IMAGE] == 2


async def test_throttle_is_throttled_with_retry_after_and_holds_the_quota(
    sim: Simulators, make_client: ClientFactory
) -> None:
    sim.state.faults.add(Fault(api=API_LIST_IMAGES, kind="throttle", retry_after=7, times=1))
    client = make_client()
    outcome = await client.find_image(API_REF, PINNED, deadline=deadline(2.0))
    assert isinstance(outcome, outcomes.Throttled)
    assert outcome.retry_after == 7.0
    assert outcome.code == "APIGW.0308"
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1  # 7 s do not fit into 2: not retried
    # The limiter honours the hold: the next lookup is refused without calling.
    again = await client.find_image(API_REF, PINNED, deadline=deadline(2.0))
    assert isinstance(again, outcomes.Throttled)
    assert again.code is None
    assert "client-side quota" in again.detail
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1


async def test_malformed_is_bad_response_not_retried(sim: Simulators, make_client: ClientFactory) -> None:
    sim.state.faults.add(Fault(api=API_BASE_IMAGE, kind="malformed"))
    outcome = await lookup_base_image(make_client(), API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.BadResponse)
    assert "not a JSON object" in outcome.detail
    assert sim.state.faults.calls[API_BASE_IMAGE] == 1


async def test_auth_fault_is_unauthorized_not_retried(sim: Simulators, make_client: ClientFactory) -> None:
    sim.state.faults.add(Fault(api=API_LIST_IMAGES, kind="auth"))
    outcome = await make_client().find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == "APIGW.0301"
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1


# -- authentication ---------------------------------------------------------------------------------------


async def test_wrong_secret_is_unauthorized(sim: Simulators, make_client: ClientFactory) -> None:
    client = make_client(HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk="not-the-secret")))
    outcome = await client.find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.code == "APIGW.0301"
    assert "signature does not match" in outcome.detail
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1


@pytest.mark.parametrize("shift", [-20 * 60.0, 20 * 60.0])
async def test_skewed_clock_is_unauthorized(sim: Simulators, make_client: ClientFactory, shift: float) -> None:
    client = make_client(HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk), clock=lambda: time.time() + shift))
    outcome = await client.find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unauthorized)
    assert "Signature expired" in outcome.detail
    # ... and the same seen from the server's side.
    sim.state.clock = lambda: time.time() - shift
    assert isinstance(await make_client().find_image(API_REF, PINNED, deadline=deadline()), outcomes.Unauthorized)


async def test_temporary_credentials_need_their_security_token(make_client: ClientFactory) -> None:
    assert TEMPORARY.security_token is not None
    good = make_client(
        HuaweiSigner(HuaweiCredentials(ak=TEMPORARY.ak, sk=TEMPORARY.sk, security_token=TEMPORARY.security_token))
    )
    assert isinstance(await lookup_base_image(good, API_REF, LOCATION, deadline=deadline()), outcomes.Found)
    without = make_client(HuaweiSigner(HuaweiCredentials(ak=TEMPORARY.ak, sk=TEMPORARY.sk)))
    assert isinstance(await without.find_image(API_REF, PINNED, deadline=deadline()), outcomes.Unauthorized)
    other = make_client(HuaweiSigner(HuaweiCredentials(ak=TEMPORARY.ak, sk=TEMPORARY.sk, security_token="forged")))
    assert isinstance(await other.find_image(API_REF, PINNED, deadline=deadline()), outcomes.Unauthorized)


async def test_unknown_access_key_is_unauthorized(make_client: ClientFactory) -> None:
    client = make_client(HuaweiSigner(HuaweiCredentials(ak="NOSUCHAKNOSUCHAK0000", sk=AKSK.sk)))
    outcome = await client.find_image(API_REF, LOCATION, deadline=deadline())
    assert isinstance(outcome, outcomes.Unauthorized)
    assert outcome.api == API_LIST_PROJECTS


async def test_pod_identity_credentials_work_end_to_end(
    sim: Simulators, make_client: ClientFactory, pki: TestPki, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-projected-service-account-token\n", encoding="utf-8")
    provider = PodIdentityCredentials(f"{sim.hss_url}/pod-identity/credentials", token_file, verify=pki.ca_file)
    client = make_client(HuaweiSigner(provider))
    outcome = await lookup_base_image(client, API_REF, LOCATION, deadline=deadline())
    assert isinstance(outcome, outcomes.Found)
    assert sim.state.faults.calls["PodIdentityCredentials"] == 1
    token_file.write_text("invalid-token", encoding="utf-8")
    refused = PodIdentityCredentials(f"{sim.hss_url}/pod-identity/credentials", token_file, verify=pki.ca_file)
    outcome = await make_client(HuaweiSigner(refused)).find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unauthorized)
    assert "HTTP 401" in outcome.detail


async def test_iam_token_auth_and_one_refresh_on_401(sim: Simulators, make_client: ClientFactory, pki: TestPki) -> None:
    auth = IamTokenAuth(
        IamPassword(IAM_USER.name, IAM_USER.password, IAM_USER.domain), iam_endpoint=sim.hss_url, verify=pki.ca_file
    )
    client = make_client(auth)
    assert isinstance(await lookup_base_image(client, API_REF, LOCATION, deadline=deadline()), outcomes.Found)
    assert sim.state.faults.calls["KeystoneCreateUserTokenByPassword"] == 1
    async with httpx.AsyncClient(verify=pki.client_context()) as control:
        revoked = await control.delete(f"{sim.hss_url}/_sim/hss/iam/tokens")
    assert revoked.json() == {"revoked": 1}
    outcome = await lookup_base_image(
        client, ref("swr.cn-north-4.myhuaweicloud.com/demo/worker:3.1.0"), LOCATION, deadline=deadline()
    )
    assert isinstance(outcome, outcomes.Found)
    assert sim.state.faults.calls["KeystoneCreateUserTokenByPassword"] == 2  # refreshed once, on the first 401
    assert auth.refreshes("cn-north-4") == 2


async def test_iam_wrong_password_is_unauthorized(sim: Simulators, make_client: ClientFactory, pki: TestPki) -> None:
    auth = IamTokenAuth(
        IamPassword(IAM_USER.name, "wrong-password", IAM_USER.domain), iam_endpoint=sim.hss_url, verify=pki.ca_file
    )
    outcome = await make_client(auth).find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unauthorized)
    assert "HTTP 401" in outcome.detail
    assert "wrong-password" not in outcome.message


async def test_tls_is_verified(sim: Simulators, make_client: ClientFactory) -> None:
    outcome = await make_client(verify=True).find_image(API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, outcomes.Unavailable)
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail


# -- the quota ----------------------------------------------------------------------------------------------


async def test_a_quota_that_cannot_fit_the_deadline_is_throttled_without_calling(
    sim: Simulators, make_client: ClientFactory
) -> None:
    client = make_client(rate=Rate(1, 60.0))
    assert isinstance(await client.find_image(API_REF, PINNED, deadline=deadline()), outcomes.Found)
    outcome = await client.find_image(API_REF, PINNED, deadline=deadline(2.0))
    assert isinstance(outcome, outcomes.Throttled)
    assert outcome.retry_after is not None
    assert outcome.retry_after > 58
    assert sim.state.faults.calls[API_LIST_IMAGES] == 1


def _burst_catalogue(count: int) -> Catalogue:
    images = [
        {
            "reference": f"swr.cn-north-4.myhuaweicloud.com/burst/app-{index:02d}:1.0.{index}",
            "digest": f"sha256:{index:064x}",
            "huawei": {
                "base_image": {"os_name": "Debian GNU/Linux", "os_version": str(10 + index % 3), "layer_digest": ""}
            },
        }
        for index in range(count)
    ]
    credentials = [{"ak": AKSK.ak, "sk": AKSK.sk, "project_id": PROJECT}]
    return Catalogue.from_dict({"credentials": {"huawei": credentials}, "images": images})


async def test_a_burst_of_50_lookups_stays_within_the_servers_quota(pki: TestPki) -> None:
    rate = Rate(5, 1.0)
    catalogue = _burst_catalogue(50)
    recorder = Recorder()
    with _simulators(pki, catalogue, hss_rate=rate) as sim:
        async with HssClient(
            HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk)),
            endpoint=sim.hss_url,
            verify=pki.ca_file,
            rate=rate,
            observer=recorder,
        ) as client:
            started = time.monotonic()

            async def lookup(image: ImageReference) -> tuple[Any, float]:
                outcome = await lookup_base_image(client, image, PINNED, deadline=Deadline.after(60.0))
                return outcome, time.monotonic() - started

            results = await asyncio.gather(*(lookup(image.reference) for image in catalogue.huawei_images()))
            elapsed = time.monotonic() - started
        calls = sim.state.faults.snapshot()
    answers = [outcome for outcome, _ in results]
    assert all(isinstance(outcome, outcomes.Found) for outcome in answers), [
        o for o in answers if not isinstance(o, outcomes.Found)
    ]
    assert [o.value for o in answers if isinstance(o, outcomes.Found)] == [
        outcomes.BaseImage("Debian GNU/Linux", str(10 + index % 3), "") for index in range(50)
    ]
    # Exactly one call per lookup and API: no 429 was answered (a 429 would have been retried, and counted).
    # The client counts each call in its window until its answer came, the latest HSS can have counted it:
    # however late a call reaches cloudsim on a loaded machine, the next window waits for it.
    assert calls[API_LIST_IMAGES] == 50
    assert calls[API_BASE_IMAGE] == 50
    assert {outcome for _, outcome in recorder.calls} == {"found"}
    finish = sorted(seconds for _, seconds in results)
    print(
        f"\n50-lookup burst at {rate} per API: all done in {elapsed:.2f}s; "
        f"first {finish[0]:.2f}s, median {finish[25]:.2f}s, last {finish[-1]:.2f}s; "
        f"quota waits {len(recorder.waits)} totalling {sum(recorder.waits):.1f}s"
    )


async def test_a_call_that_reaches_hss_late_still_counts_in_the_clients_window(pki: TestPki) -> None:
    # HSS counts a call when it arrives. The first call here arrives 0.6 s after it was sent (a slow
    # handshake on a loaded machine: cloudsim's latency fault holds it before it is counted); the client
    # counts it when its answer came, so the calls of the next window wait for it, and HSS answers no 429.
    rate = Rate(2, 1.0)
    catalogue = _burst_catalogue(4)
    with _simulators(pki, catalogue, hss_rate=rate) as sim:
        sim.state.faults.add(Fault(api=API_LIST_IMAGES, kind="latency", seconds=0.6, times=1))
        signer = HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk))
        async with HssClient(signer, endpoint=sim.hss_url, verify=pki.ca_file, rate=rate) as client:
            answers = await asyncio.gather(
                *(client.find_image(i.reference, PINNED, deadline=deadline(10.0)) for i in catalogue.huawei_images())
            )
        calls = sim.state.faults.snapshot()
    assert all(isinstance(outcome, outcomes.Found) for outcome in answers), answers
    assert calls[API_LIST_IMAGES] == 4, "a 429 was answered (and retried)"


# -- no credential anywhere ---------------------------------------------------------------------------------


async def test_no_credential_in_logs_errors_or_reprs(
    sim: Simulators, make_client: ClientFactory, pki: TestPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "image_gate", "cloudsim", "aiohttp"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    assert TEMPORARY.security_token is not None
    secrets = [AKSK.ak, AKSK.sk, TEMPORARY.ak, TEMPORARY.sk, TEMPORARY.security_token, IAM_USER.password]
    texts: list[str] = []

    signer = HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk))
    temporary = HuaweiSigner(
        HuaweiCredentials(ak=TEMPORARY.ak, sk=TEMPORARY.sk, security_token=TEMPORARY.security_token)
    )
    wrong = HuaweiSigner(HuaweiCredentials(ak=AKSK.ak, sk=AKSK.sk + "-wrong"))
    token_file = tmp_path / "token"
    token_file.write_text("pod-token", encoding="utf-8")
    pod = PodIdentityCredentials(f"{sim.hss_url}/pod-identity/credentials", token_file, verify=pki.ca_file)
    iam = IamTokenAuth(
        IamPassword(IAM_USER.name, IAM_USER.password, IAM_USER.domain), iam_endpoint=sim.hss_url, verify=pki.ca_file
    )
    sim.state.faults.add(Fault(api=API_BASE_IMAGE, kind="error", status=500, times=1))
    for auth in (signer, temporary, wrong, HuaweiSigner(pod), iam):
        client = make_client(auth)
        texts.append(repr(client))
        texts.append(repr(auth))
        for image in (API_REF, ref("swr.cn-north-4.myhuaweicloud.com/demo/nope:1")):
            outcome = await lookup_base_image(client, image, LOCATION, deadline=deadline())
            texts.extend([repr(outcome), str(outcome)])
            if not isinstance(outcome, outcomes.Found | outcomes.NotFound):
                texts.append(outcome.message)

    minted = await pod.credentials()
    token = await iam.token("cn-north-4")
    secrets += [minted.sk, minted.ak, minted.security_token or "", token.value, "pod-token"]
    texts += [repr(minted), str(minted), repr(token), repr(pod), repr(iam.password)]
    everything = "\n".join(texts) + "\n" + caplog.text
    assert "X-Subject-Token" in caplog.text  # httpcore did log the IAM answer's headers...
    for secret in secrets:
        assert secret not in everything, f"a credential ({secret[:4]}…) leaked"


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (400, outcomes.BadResponse, "HSS.0001"),
        (403, outcomes.Unauthorized, "HSS.0013"),
        (404, outcomes.NotFound, None),
        (502, outcomes.Unavailable, "APIGW.0202"),
    ],
)
async def test_error_codes_map_to_outcomes(
    sim: Simulators, make_client: ClientFactory, status: int, expected: type, code: str | None
) -> None:
    sim.state.faults.add(Fault(api=API_BASE_IMAGE, kind="error", status=status))
    outcome = await lookup_base_image(make_client(), API_REF, PINNED, deadline=deadline())
    assert isinstance(outcome, expected), outcome
    if code is not None:
        assert getattr(outcome, "code", None) == code
    assert outcome.request_id  # from X-Request-Id


def test_error_bodies_are_read_as_the_sdk_reads_them() -> None:
    from image_gate.clouds.huawei.answers import error_fields as _error_fields
    from image_gate.clouds.huawei.answers import retry_after as _retry_after

    assert _error_fields({"error_code": "HSS.0001", "error_msg": "Invalid parameter."}) == (
        "HSS.0001",
        "Invalid parameter.",
    )
    assert _error_fields({"errorCode": "X.1", "errorMsg": "m"}) == ("X.1", "m")
    assert _error_fields({"code": 7, "message": "m"}) == ("7", "m")
    assert _error_fields({"error": {"code": "APIGW.0308", "message": "slow down"}}) == ("APIGW.0308", "slow down")
    assert _error_fields({"unrelated": 1}) == (None, None)
    assert _retry_after("12", default=60.0) == 12.0
    assert _retry_after(None, default=60.0) == 60.0
    assert _retry_after("soon", default=60.0) == 60.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", default=60.0) == 0.0  # in the past
