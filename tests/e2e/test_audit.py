"""The leader's background audit against a real API server: reports and policy status for what already runs.

Two replicas share facts through ImageFacts and one Lease. The workloads run before any policy exists
(no webhook sends them to image-gate), then one policy is rolled out as a platform team would:
Audit, Warn, Enforce; the workload is fixed; the policy is deleted. The scenarios build on each other,
in file order.

Short timings keep this quick: a pass 1 s after a policy or fact change, a timed pass every 15 s, and
HSS's client-side quota at one call per API every 10 s, so a second image's base OS is not stored for
about 10 s: long enough to see its ``error`` result turn into ``pass`` or ``fail``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ControlPlane

from cloudsim.catalogue import Catalogue
from tests.e2e.audit import ReportWatch, audit_passes, openreports_crd, policy_report, results_of
from tests.e2e.factstore import FactSharingReplicas, without_leader
from tests.e2e.imagegate import (
    CORE_RULES,
    CloudSim,
    ImageGate,
    Kube,
    PolicyFactory,
    admission_review,
    cluster_role_account,
    deployment_manifest,
    image_gate_as,
    make_namespace,
    pod_manifest,
    scoped_policy,
    wait_for,
)

SWR = "swr.cn-north-4.myhuaweicloud.com/demo"
LEGACY = f"{SWR}/legacy-batch:2.3.0"  # CentOS 7.9.2009: denied
API = f"{SWR}/api:1.4.2"  # Ubuntu 22.04
FIXED = f"{SWR}/worker:3.1.0"  # Debian 12
RULE = "baseImage.deniedOS"
AUDIT_ENV = {
    "IMAGE_GATE_AUDIT_INTERVAL_SECONDS": "15",
    "IMAGE_GATE_AUDIT_DEBOUNCE_SECONDS": "1",
    "IMAGE_GATE_HSS_RATE": "1/10",
}

pytestmark = pytest.mark.usefixtures("report_crd")


@pytest.fixture(scope="module")
def audit_namespace(kube: Kube) -> Iterator[str]:
    """A namespace no webhook judges, with a Deployment of the denied image and a pod of a good one."""
    name = make_namespace(kube, "audit", {})
    legacy = deployment_manifest("legacy", name, LEGACY)
    legacy["spec"]["strategy"] = {"type": "Recreate"}  # no kubelet here: a rolling update would keep the old pod
    kube.apply([legacy, pod_manifest("api", name, API)])
    wait_for(lambda: _pods_of(kube, name, "legacy") or None, what="the Deployment's pod")
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def replicas(
    fact_sharing_replicas: FactSharingReplicas, cloudsim: CloudSim, audit_namespace: str
) -> Iterator[list[ImageGate]]:
    with fact_sharing_replicas.running(cloudsim, prefix="audit", env=AUDIT_ENV) as gates:
        yield gates


@pytest.fixture(scope="module")
def rollout(kube: Kube, audit_namespace: str) -> Iterator[PolicyFactory]:
    with PolicyFactory(kube) as factory:
        yield factory


def _pods_of(kube: Kube, namespace: str, app: str) -> list[str]:
    pods = kube.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return sorted(pod["metadata"]["name"] for pod in pods if not pod["metadata"].get("deletionTimestamp"))


def _policy(namespace: str, mode: str) -> dict[str, Any]:
    spec = {"mode": mode, "match": {"images": [f"{SWR}/**"]}, "baseImage": {"deniedOS": [{"name": "CentOS"}]}}
    return scoped_policy(f"audit-{namespace}", namespace, spec)


def _judged(
    report: dict[str, Any] | None, policy: str, legacy_pods: list[str], *, legacy: str, api: str = "pass"
) -> dict[tuple[str, str, str], dict[str, Any]] | None:
    """The results once the Deployment, its pods and the api pod have ``legacy`` / ``api`` results, else None."""
    results = results_of(report, policy)
    wanted = {("Deployment", "legacy", "legacy"): legacy, ("Pod", "api", "api"): api}
    wanted |= {("Pod", pod, "legacy"): legacy for pod in legacy_pods}
    if {key: results[key]["result"] for key in wanted if key in results} != wanted:
        return None
    if set(results) != set(wanted):
        return None  # a result of a pod that is gone, or of an object not asked about
    return results


def _roll_out(
    kube: Kube, namespace: str, rollout: PolicyFactory, mode: str, *, ready: bool = False
) -> tuple[str, list[str], ReportWatch]:
    """Apply the test policy in ``mode`` (with ``ready``, wait until image-gate has indexed it).

    Returns its name, the Deployment's pods, and a watch of the namespace's report started just before.
    """
    legacy_pods = _pods_of(kube, namespace, "legacy")
    watch = ReportWatch(kube, namespace)
    policy = rollout.apply(_policy(namespace, mode), wait=ready)["metadata"]["name"]
    return policy, legacy_pods, watch


def _violations(kube: Kube, policy: str) -> int | None:
    audit = (kube.get("imagegatepolicy", policy).get("status") or {}).get("audit") or {}
    total = audit.get("totalViolations")
    return int(total) if isinstance(total, int) else None


def test_an_audit_policy_reports_what_already_runs_within_60s(
    kube: Kube, replicas: list[ImageGate], audit_namespace: str, rollout: PolicyFactory
) -> None:
    namespace = audit_namespace
    policy, legacy_pods, watch = _roll_out(kube, namespace, rollout, "Audit")

    # No fact is stored yet (no review asked for one): the first results say so, and the leader asks for them.
    unresolved = watch.until(
        lambda report: [r for r in results_of(report, policy).values() if r["result"] == "error"] or None,
        what="error results for the facts not stored yet",
        timeout=30,
    )
    first_report_at = watch.elapsed()
    assert all(r["rule"] == "baseImage" for r in unresolved), unresolved
    assert all("could not be checked yet" in r["message"] for r in unresolved), unresolved

    results = watch.until(
        lambda report: _judged(report, policy, legacy_pods, legacy="fail"),
        what="fail for the CentOS Deployment and its pod, pass for the Ubuntu pod",
        timeout=60 - watch.elapsed(),
    )
    judged_at = watch.elapsed()
    failed = results[("Deployment", "legacy", "legacy")]
    assert failed["rule"] == RULE
    assert failed["source"] == "image-gate"
    assert f'policy "{policy}" rule {RULE}: found CentOS' in failed["message"], failed["message"]
    assert failed["properties"]["image"] == LEGACY
    assert "CentOS" in failed["properties"]["found"]
    report = policy_report(kube, namespace)
    assert report is not None
    assert report["summary"]["fail"] == 1 + len(legacy_pods)
    assert report["summary"]["pass"] == 1
    assert report["summary"]["error"] == 0
    assert report["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "image-gate"
    assert wait_for(lambda: _violations(kube, policy) == 1 + len(legacy_pods) or None, what="status.audit") is True
    status = kube.get("imagegatepolicy", policy)["status"]["audit"]
    assert {(v["kind"], v["name"]) for v in status["violations"]} == {("Deployment", "legacy")} | {
        ("Pod", pod) for pod in legacy_pods
    }
    assert judged_at < 60
    print(f"audit: first report {first_report_at:.1f}s after the policy, every fact judged after {judged_at:.1f}s")
    states = [sorted({r["result"] for r in results_of(seen, policy).values()}) for _, seen in watch.seen]
    print(f"audit: report states seen: {states}")


def test_a_warn_policy_gives_warn_results(
    kube: Kube, replicas: list[ImageGate], audit_namespace: str, rollout: PolicyFactory
) -> None:
    policy, legacy_pods, watch = _roll_out(kube, audit_namespace, rollout, "Warn")
    results = watch.until(
        lambda report: _judged(report, policy, legacy_pods, legacy="warn"), what="warn results", timeout=30
    )
    assert results[("Deployment", "legacy", "legacy")]["scored"] is False
    assert wait_for(lambda: _violations(kube, policy) == 1 + len(legacy_pods) or None, what="status.audit") is True
    print(f"audit: Warn results {watch.elapsed():.1f}s after the change")


def test_an_enforce_policy_reports_in_the_words_of_its_denial(
    kube: Kube, replicas: list[ImageGate], audit_namespace: str, rollout: PolicyFactory
) -> None:
    namespace = audit_namespace
    policy, legacy_pods, watch = _roll_out(kube, namespace, rollout, "Enforce", ready=True)
    results = watch.until(
        lambda report: _judged(report, policy, legacy_pods, legacy="fail"), what="fail results", timeout=30
    )
    # The same container, as a new pod: the denial's line for it is the report's message.
    review = replicas[0].review("pods", admission_review(pod_manifest("probe", namespace, LEGACY, container="legacy")))
    assert review["allowed"] is False
    denial = review["status"]["message"].splitlines()
    assert "- " + results[("Deployment", "legacy", "legacy")]["message"] in denial, denial


def test_the_fixed_workload_passes(
    kube: Kube, replicas: list[ImageGate], audit_namespace: str, rollout: PolicyFactory
) -> None:
    namespace = audit_namespace
    policy = rollout.names[0]
    old_pods = _pods_of(kube, namespace, "legacy")
    started = time.monotonic()
    kube.kubectl("set", "image", "deployment/legacy", f"legacy={FIXED}", "-n", namespace)
    new_pods = wait_for(
        lambda: [p for p in _pods_of(kube, namespace, "legacy") if p not in old_pods] or None,
        what="the fixed Deployment's new pod",
    )
    watch = ReportWatch(kube, namespace)
    results = watch.until(
        lambda report: _judged(report, policy, new_pods, legacy="pass"),
        what="pass for the fixed Deployment and its new pod, the old pod's result gone",
        timeout=60,
    )
    assert results[("Deployment", "legacy", "legacy")]["properties"]["image"] == FIXED
    assert wait_for(lambda: _violations(kube, policy) == 0 or None, what="no violations in status.audit") is True
    print(f"audit: the fixed workload passed {time.monotonic() - started:.1f}s after the fix")


def test_only_the_leader_audits_and_a_new_one_rewrites_nothing(
    kube: Kube, replicas: list[ImageGate], audit_namespace: str, rollout: PolicyFactory
) -> None:
    namespace = audit_namespace
    policy = rollout.names[0]
    auditing = [gate for gate in replicas if audit_passes(gate)]
    assert len(auditing) == 1, [audit_passes(gate)[-1:] for gate in replicas]
    (leader,) = auditing
    (follower,) = [gate for gate in replicas if gate is not leader]
    # A timed pass that finds what the last one found writes nothing.
    quiet = ("audit pass (timer)", "reports 0 written, 0 deleted", "policy status 0 written")
    wait_for(
        lambda: any(all(words in line for words in quiet) for line in audit_passes(leader)) or None,
        what="a timed pass that writes nothing",
        timeout=40,
    )
    unchanged = {"object": "report", "outcome": "unchanged"}
    assert leader.metric_value("image_gate_audit_writes_total", unchanged) >= 1
    assert leader.metric_value("image_gate_audit_passes_total", {"trigger": "timer"}) >= 1
    assert leader.metric_value("image_gate_audit_results", {"result": "pass"}) == 3
    assert follower.metric_value("image_gate_audit_passes_total", {"trigger": "timer"}) == 0
    report_version = kube.get("policyreports.wgpolicyk8s.io", "image-gate", "-n", namespace)["metadata"]
    policy_version = kube.get("imagegatepolicy", policy)["metadata"]["resourceVersion"]

    started = time.monotonic()
    leader.stop()  # SIGTERM: the Lease is released, the follower takes over within a retry period
    first = wait_for(lambda: next(iter(audit_passes(follower)), None), what="the new leader's first pass", timeout=30)
    took = time.monotonic() - started
    assert first.startswith("audit pass (leading)"), first
    assert "reports 0 written, 0 deleted, 1 unchanged" in first, first
    assert "policy status 0 written, 1 unchanged" in first, first
    assert kube.get("policyreports.wgpolicyk8s.io", "image-gate", "-n", namespace)["metadata"] == report_version
    assert kube.get("imagegatepolicy", policy)["metadata"]["resourceVersion"] == policy_version
    print(f"audit: the new leader's first pass {took:.1f}s after the old one stopped: {first}")


def test_deleting_the_policy_removes_its_results(
    kube: Kube, replicas: list[ImageGate], audit_namespace: str, rollout: PolicyFactory
) -> None:
    namespace = audit_namespace
    watch = ReportWatch(kube, namespace)
    rollout.delete_all()
    watch.until(lambda report: True if report is None else None, what="the report deleted", timeout=30)
    print(f"audit: the report went {watch.elapsed():.1f}s after the policy")


def test_auto_writes_openreports_once_its_crd_is_served(
    kube: Kube,
    replicas: list[ImageGate],
    fact_sharing_replicas: FactSharingReplicas,
    cloudsim: CloudSim,
    audit_namespace: str,
    rollout: PolicyFactory,
) -> None:
    """``auto`` (the default) chooses OpenReports when its CRD is served, when a replica starts leading."""
    namespace = audit_namespace
    for gate in replicas:
        gate.stop()
    with (
        openreports_crd(kube),
        fact_sharing_replicas.running(cloudsim, prefix="openreports", count=1, env=AUDIT_ENV),
    ):
        policy = rollout.apply(_policy(namespace, "Audit"), wait=False)["metadata"]["name"]
        report = wait_for(
            lambda: kube.get_or_none("reports.openreports.io", "image-gate", "-n", namespace),
            what="an OpenReports Report",
            timeout=30,
        )
        assert report["source"] == "image-gate"
        results = wait_for(
            lambda: results_of(kube.get("reports.openreports.io", "image-gate", "-n", namespace), policy) or None,
            what="its results",
        )
        assert {result["result"] for result in results.values()} == {"pass"}, results
        assert policy_report(kube, namespace) is None, "one flavour at a time"


WITHOUT_WORKLOAD_READS = "image-gate-no-workload-reads"


def test_without_rbac_to_read_workloads_the_audit_is_off_and_admission_works(
    kube: Kube,
    control_plane: ControlPlane,
    fact_sharing_replicas: FactSharingReplicas,
    cloudsim: CloudSim,
    catalogue: Catalogue,
    tmp_path: Path,
) -> None:
    """A ClusterRole from before the audit: kopf would retry a forbidden pod watch for ever and the replica
    would never be ready; the audit asks first, stays off and says so."""
    rules = [
        *CORE_RULES,
        {
            "apiGroups": ["imagegate.io"],
            "resources": ["imagefacts"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        },
        {"apiGroups": ["imagegate.io"], "resources": ["imagefacts/status"], "verbs": ["patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    ]
    without_leader(kube)  # image-gate's namespace, and no Lease of an earlier test
    kube.apply(cluster_role_account(WITHOUT_WORKLOAD_READS, rules))
    gate = image_gate_as(WITHOUT_WORKLOAD_READS, tmp_path / "gate", control_plane, kube, cloudsim, catalogue)
    try:
        gate.start()  # ready: kopf watches nothing it may not
        log = gate.process.log_path.read_text()
        assert "the background audit is off: this service account may not list and watch pods" in log, (
            gate.describe_log()
        )
        assert not audit_passes(gate)
        assert gate.review("pods", admission_review(pod_manifest("unjudged", "default", API)))["allowed"] is True
    finally:
        gate.stop()
        kube.kubectl(
            "delete", "clusterrolebinding,clusterrole", WITHOUT_WORKLOAD_READS, "--ignore-not-found", check=False
        )
