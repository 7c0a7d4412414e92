"""Two image-gate processes sharing facts through ImageFacts and one Lease, against a real API server.

cloudsim enforces HSS's published quota here (5 calls a minute per user per API, 429 beyond), so
every number below is what a cluster with HSS would see. The scenarios build on each other, in
file order: the first resolves images, the second restarts both replicas, the third kills the
leader, the last takes the store away.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from harness import ControlPlane

from tests.e2e.factstore import (
    FACT_CRD_NAME,
    FactSharingReplicas,
    allowed,
    deny_unresolved,
    quota_enforcing_cloudsim,
)
from tests.e2e.imagegate import CloudSim, ImageGate, Kube, make_namespace, wait_for

SWR = "swr.cn-north-4.myhuaweicloud.com/demo"
FIRST_IMAGES = (f"{SWR}/api:1.4.2", f"{SWR}/api:1.4.1", f"{SWR}/worker:3.1.0", f"{SWR}/edge-proxy:0.9.1")
AFTER_TAKEOVER = (f"{SWR}/api-gateway:1.4.2", f"{SWR}/legacy-batch:2.3.0")
HSS_APIS = ("ListRegistryImages", "ListImageBasicImage")
LEASE_DURATION = 15.0
RETRY_PERIOD = 2.0


@pytest.fixture(scope="module")
def quota_cloudsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSim]:
    """cloudsim answering 429 beyond HSS's published quota."""
    with quota_enforcing_cloudsim(tmp_path_factory.mktemp("cloudsim-quota"), "5/60") as sim:
        yield sim


@pytest.fixture(scope="module")
def replicas(fact_sharing_replicas: FactSharingReplicas, quota_cloudsim: CloudSim) -> Iterator[list[ImageGate]]:
    with fact_sharing_replicas.running(quota_cloudsim, prefix="replica") as gates:
        yield gates


@pytest.fixture(scope="module")
def shared_namespace(kube: Kube, e2e_token: str) -> Iterator[str]:
    name = make_namespace(kube, "shared", {"imagegate.io/e2e": e2e_token})
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def os_policy(kube: Kube, shared_namespace: str) -> Iterator[None]:
    """Every covered image needs its base image resolved; an unresolved one is denied."""
    with deny_unresolved(kube, f"shared-{shared_namespace}", shared_namespace, f"{SWR}/**"):
        yield


def metric_sum(gate: ImageGate, name: str, labels: Mapping[str, str]) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    total = 0.0
    for line in gate.health("/metrics").text.splitlines():
        if line.startswith(name + "{") and wanted <= set(line[len(name) + 1 : line.rindex("}")].split(",")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def hss_calls(sim: CloudSim) -> dict[str, int]:
    calls = sim.calls()
    return {api: int(calls.get(api, 0)) for api in HSS_APIS}


def inventory_pages(gates: Sequence[ImageGate]) -> int:
    """The ListRegistryImages calls the leader's HSS inventory mirror made (every page outcome but "no free
    slot", which asked nothing), counted by the running replicas since they started."""
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for gate in gates
            if gate.process.is_running()
            for line in gate.health("/metrics").text.splitlines()
            if line.startswith("image_gate_inventory_pages_total{") and 'outcome="no free slot"' not in line
        )
    )


def inventory_answers(gates: Sequence[ImageGate]) -> int:
    """HSS image lookups the mirror answered instead of a ListRegistryImages call, by the running replicas."""
    return int(
        sum(metric_sum(gate, "image_gate_inventory_answers_total", {}) for gate in gates if gate.process.is_running())
    )


def calls_and_pages(sim: CloudSim, gates: Sequence[ImageGate]) -> tuple[dict[str, int], int]:
    """cloudsim's calls per API and the mirror's pages among them, read again until both hold still.

    The mirror reads HSS's inventory a page per quota window, ahead of need (``facts.inventory``): those
    calls are not fact lookups, and what these tests count is what facts cost (a lookup the mirror
    answers costs no call: `inventory_answers`).
    """

    def counts() -> dict[str, int]:
        return {api: int(count) for api, count in sim.calls().items()}

    while True:
        calls, pages = counts(), inventory_pages(gates)
        time.sleep(0.5)
        if (calls, pages) == (counts(), inventory_pages(gates)):
            return calls, pages


def throttled(gates: Sequence[ImageGate]) -> float:
    return sum(
        metric_sum(gate, "image_gate_upstream_calls_total", {"cloud": "huawei", "outcome": "throttled"})
        for gate in gates
    )


def admit_everywhere(gates: Sequence[ImageGate], namespace: str, images: Sequence[str], *, timeout: float) -> float:
    """Send every image to every replica at once, as the API server spreads a rollout, until all admit them.

    Returns the seconds it took. A denial is retried, as the API server's controllers retry.
    """
    started = time.monotonic()
    pending = {(index, image) for index in range(len(gates)) for image in images}
    with ThreadPoolExecutor(max_workers=8) as pool:
        while pending:
            assert time.monotonic() - started < timeout, f"not admitted within {timeout:g}s: {sorted(pending)}"
            results = list(pool.map(lambda item: (item, allowed(gates[item[0]], namespace, item[1])), sorted(pending)))
            pending -= {item for item, ok in results if ok}
            if pending:
                time.sleep(1.0)
    return time.monotonic() - started


def leader_of(gates: Sequence[ImageGate]) -> ImageGate | None:
    leaders = [gate for gate in gates if gate.process.is_running() and metric_plain(gate, "image_gate_leader") == 1]
    assert len(leaders) <= 1, "two replicas think they lead"
    return leaders[0] if leaders else None


def leader_and_follower(gates: Sequence[ImageGate]) -> tuple[ImageGate, ImageGate]:
    """Once a leader is elected (within a lease and a bit): the leader, and a replica that is not it."""
    leader = wait_for(lambda: leader_of(gates), what="a leader", timeout=LEASE_DURATION + 10)
    return leader, next(gate for gate in gates if gate is not leader)


def metric_plain(gate: ImageGate, name: str) -> float:
    for line in gate.health("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.usefixtures("os_policy")
def test_both_replicas_cost_one_call_per_image_per_api(
    replicas: list[ImageGate], quota_cloudsim: CloudSim, shared_namespace: str, kube: Kube
) -> None:
    wait_for(lambda: leader_of(replicas), what="a leader", timeout=LEASE_DURATION + 10)
    seconds = admit_everywhere(replicas, shared_namespace, FIRST_IMAGES, timeout=90)
    calls, pages = calls_and_pages(quota_cloudsim, replicas)
    lookups = calls["ListRegistryImages"] - pages + inventory_answers(replicas)
    assert lookups == len(FIRST_IMAGES), (calls, pages)
    assert calls["ListImageBasicImage"] <= len(FIRST_IMAGES), calls
    assert throttled(replicas) == 0
    facts = kube.get("imagefacts")["items"]
    states = sorted((f["spec"]["reference"], f.get("status", {}).get("state")) for f in facts)
    assert ("swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2", "Found") in states
    found = [f for f in facts if f["spec"]["cloud"] == "huawei" and f.get("status", {}).get("state") == "Found"]
    assert found
    assert all(f["status"].get("hssImageId") for f in found), "each HSS fact names the image HSS found"
    print(f"\n{len(FIRST_IMAGES)} images on 2 replicas: admitted by both in {seconds:.1f}s, HSS calls {calls}")
    print(kube.kubectl("get", "igf").stdout)


def test_check_from_the_cluster_sees_what_admission_sees(
    replicas: list[ImageGate], control_plane: ControlPlane, tmp_path: Path
) -> None:
    """No cloud credentials at all: only the cluster's ImageFacts can answer."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "imagegate.io/v1alpha1",
                "kind": "ImageGatePolicy",
                "metadata": {"name": "known-base-os"},
                "spec": {
                    "match": {"images": [f"{SWR}/**"]},
                    "baseImage": {"deniedOS": [{"name": "Windows"}]},
                    "onUnresolved": "Deny",
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_GATE_", "HUAWEICLOUD_", "ALIBABA_"))}
    env |= control_plane.env()
    check = [str(Path(sys.executable).with_name("image-gate")), "check", FIRST_IMAGES[0], "--policy", str(policy)]
    from_cluster = subprocess.run([*check, "--from-cluster"], env=env, capture_output=True, text=True, timeout=60)
    assert from_cluster.returncode == 0, from_cluster.stdout + from_cluster.stderr
    alone = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1, "without the cluster's facts and without credentials it cannot know"


@pytest.mark.usefixtures("os_policy")
def test_restarted_replicas_admit_known_images_without_a_cloud_call(
    replicas: list[ImageGate], quota_cloudsim: CloudSim, shared_namespace: str
) -> None:
    before, _ = calls_and_pages(quota_cloudsim, replicas)
    for gate in replicas:
        gate.stop()
    for gate in replicas:
        gate.start()
    admit_everywhere(replicas, shared_namespace, FIRST_IMAGES, timeout=30)
    after, pages = calls_and_pages(quota_cloudsim, replicas)  # pages since the restart: the counters restarted too
    after["ListRegistryImages"] = after.get("ListRegistryImages", 0) - pages
    assert after == before, f"a restart costs no fact lookup (the inventory mirror read {pages} pages)"


@pytest.mark.usefixtures("os_policy")
def test_a_killed_leader_is_replaced_within_the_lease_and_the_quota_holds(
    replicas: list[ImageGate], quota_cloudsim: CloudSim, shared_namespace: str
) -> None:
    leader, survivor = leader_and_follower(replicas)
    throttled_before = throttled(replicas)
    pid = leader.process.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(
        lambda: metric_plain(survivor, "image_gate_leader") == 1 or None,
        what="the survivor leading",
        timeout=LEASE_DURATION + 2 * RETRY_PERIOD + 5,
    )
    takeover = time.monotonic() - killed
    # The standby reads the Lease again exactly when it expires (the leader's last renewal, which came
    # before the kill, plus the duration): within the Lease duration, and a second for this poll's slack.
    assert takeover <= LEASE_DURATION + 1, takeover
    calls_before, pages_before = calls_and_pages(quota_cloudsim, [survivor])
    calls_before.setdefault("ListRegistryImages", 0)
    answered_before = inventory_answers([survivor])
    seconds = admit_everywhere([survivor], shared_namespace, AFTER_TAKEOVER, timeout=180)
    assert throttled([survivor]) + throttled_before == 0, "no 429 across the hand-over"
    calls, pages = calls_and_pages(quota_cloudsim, [survivor])
    lookups = calls["ListRegistryImages"] - calls_before["ListRegistryImages"] - (pages - pages_before)
    lookups += inventory_answers([survivor]) - answered_before
    assert lookups == len(AFTER_TAKEOVER), (calls_before, calls, pages_before, pages)
    print(f"\ntakeover after {takeover:.1f}s; new images admitted {seconds:.1f}s after it")
    leader.stop()
    leader.start()


@pytest.mark.usefixtures("os_policy")
def test_without_a_writable_store_admission_still_works(
    replicas: list[ImageGate], kube: Kube, shared_namespace: str
) -> None:
    leader, follower = leader_and_follower(replicas)
    kube.kubectl("delete", "crd", FACT_CRD_NAME, "--timeout=60s")
    # The leader resolved these after the take-over: its in-process cache still knows them.
    admit_everywhere([leader], shared_namespace, AFTER_TAKEOVER, timeout=30)
    # A fact nobody has: the follower cannot create its ImageFact, so it resolves in-process, and answers.
    started = time.monotonic()
    allowed(follower, shared_namespace, f"{SWR}/nightly:2025.01.01")
    assert time.monotonic() - started < 5.0, "answered within the review's deadline"
    assert metric_plain(follower, "image_gate_fact_store_degraded_total") >= 1
