"""``image-gate audit`` against a real API server: the roll-out path Audit -> Warn -> Enforce, previewed.

Workloads exist before any policy. The preview of a policy file judges them with the facts the
cluster has stored (none yet: every rule is ``error``, not resolved yet, and nothing would be
denied); once the policy is applied in Audit mode and image-gate's leader has resolved the facts,
the preview lists the CentOS containers as ``fail`` and exits 1; in Warn mode as ``warn``; after
the workloads are fixed it exits 0, and Enforce is safe. The steps build on each other, in file
order. The outputs are printed (``pytest -s``): the README's roll-out section is one such run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.factstore import FactSharingReplicas
from tests.e2e.imagegate import (
    CENTOS_IMAGE,
    UBUNTU_IMAGE,
    CloudSim,
    ImageGate,
    Kube,
    PolicyFactory,
    admission_review,
    cronjob_manifest,
    deployment_manifest,
    make_namespace,
    pod_manifest,
    scoped_policy,
    wait_for,
)

IMAGE_GATE = str(Path(sys.executable).with_name("image-gate"))
POLICY = "approved-base-os"


def policy_manifest(namespace: str, mode: str) -> dict[str, Any]:
    return scoped_policy(
        POLICY,
        namespace,
        {
            "mode": mode,
            "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
            "baseImage": {
                "allowedOS": [{"name": "Ubuntu", "versions": ["22.04", "24.04"]}],
                "deniedOS": [{"name": "CentOS"}],
            },
        },
    )


def audit(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    """``image-gate audit ARGS`` with the admin kubeconfig; its output is printed for the README."""
    result = subprocess.run(
        [IMAGE_GATE, "audit", *args], env=dict(kube.env), capture_output=True, text=True, timeout=60, check=False
    )
    print(f"\n$ image-gate audit {' '.join(args)}\n{result.stdout}{result.stderr}(exit {result.returncode})")
    return result


def audit_json(kube: Kube, *args: str) -> tuple[int, dict[str, Any]]:
    result = audit(kube, *args, "--output", "json")
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def replica(fact_sharing_replicas: FactSharingReplicas, cloudsim: CloudSim) -> Iterator[ImageGate]:
    """One image-gate sharing facts through ImageFacts: the leader, the only one resolving them."""
    with fact_sharing_replicas.running(cloudsim, prefix="audit", count=1) as gates:
        yield gates[0]


@pytest.fixture(scope="module")
def shop(kube: Kube) -> Iterator[str]:
    """A namespace no webhook judges, with a compliant Deployment and CronJob and two CentOS workloads."""
    name = make_namespace(kube, "shop", {})
    kube.apply(
        [
            # No replicas: nothing schedules Pods here, and a Pending Pod would never make way for a new one.
            deployment_manifest("api", name, UBUNTU_IMAGE, replicas=0),
            deployment_manifest("batch", name, CENTOS_IMAGE, replicas=0),
            pod_manifest("legacy", name, CENTOS_IMAGE),
            cronjob_manifest("report", name, UBUNTU_IMAGE),
        ]
    )
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def policy(kube: Kube, crd: dict[str, Any]) -> Iterator[PolicyFactory]:
    with PolicyFactory(kube) as factory:
        yield factory


def test_a_policy_file_is_previewed_before_any_fact_is_stored(
    kube: Kube, replica: ImageGate, shop: str, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy_manifest(shop, "Enforce")))
    code, document = audit_json(kube, "--policy", str(path), "--namespace", shop)
    assert code == 0, document  # nothing can be judged yet, so nothing would be denied
    assert document["policies"] == [POLICY]
    assert document["results"], "the Deployments, the Pod and the CronJob have containers the policy covers"
    assert {r["result"] for r in document["results"]} == {"error"}
    assert all("not resolved yet" in r["message"] for r in document["results"])
    assert set(document["unresolved"]) == {UBUNTU_IMAGE, CENTOS_IMAGE}
    kinds = {r["kind"] for r in document["results"]}
    assert {"Deployment", "Pod", "CronJob"} <= kinds
    assert "ReplicaSet" not in kinds, "a ReplicaSet of a Deployment is judged through its Deployment"


def test_audit_mode_lists_what_enforce_would_deny_with_the_denials_words(
    kube: Kube, replica: ImageGate, shop: str, policy: PolicyFactory
) -> None:
    policy.apply(policy_manifest(shop, "Audit"))
    # The leader resolves what a review asks for (and what its audit finds missing): one review per image.
    for image in (UBUNTU_IMAGE, CENTOS_IMAGE):
        pod = pod_manifest(f"probe-{uuid.uuid4().hex[:6]}", shop, image)
        assert replica.review("pods", admission_review(pod))["allowed"]  # Audit mode never denies

    def judged() -> dict[str, Any] | None:
        code, document = audit_json(kube, "--namespace", shop)
        return document if code == 1 and document["summary"]["error"] == 0 else None

    document = wait_for(judged, what="the facts to be stored and judged", timeout=60)
    failing = {(r["kind"], r["name"]) for r in document["results"] if r["result"] == "fail"}
    assert ("Deployment", "batch") in failing
    assert ("Pod", "legacy") in failing
    assert not {name for _, name in failing} & {"api", "report"}
    denial = next(r for r in document["results"] if r["name"] == "legacy" and r["rule"] == "baseImage.allowedOS")
    assert denial["message"] == (
        f'container "legacy" (image {CENTOS_IMAGE}): policy "{POLICY}" rule baseImage.allowedOS: '
        "found CentOS Linux 7.9.2009, expected Ubuntu 22.04 or 24.04"
    )
    assert any(r["result"] == "pass" and r["name"] == "api" for r in document["results"])

    table = audit(kube, "--namespace", shop)
    assert table.returncode == 1
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "KIND", "NAME", "CONTAINER", "IMAGE", "POLICY", "RESULT", "MESSAGE"]
    assert any(row.split()[:3] == [shop, "Pod", "legacy"] and " fail " in row for row in rows)
    assert "rule baseImage.allowedOS: found CentOS Linux 7.9.2009, expected Ubuntu 22.04 or 24.04" in table.stdout
    assert not any(" pass " in row for row in rows), "passing results are listed with --all only"
    assert any(" pass " in row for row in audit(kube, "--namespace", shop, "--all").stdout.splitlines())


def test_warn_mode_gives_warn_results_and_fixed_workloads_pass(
    kube: Kube, replica: ImageGate, shop: str, policy: PolicyFactory
) -> None:
    policy.apply(policy_manifest(shop, "Warn"))
    code, document = audit_json(kube, "--namespace", shop)
    assert code == 1, "a Warn policy's violations would be denied once it enforces"
    assert {r["result"] for r in document["results"]} == {"warn", "pass"}
    table = audit(kube, "--namespace", shop)
    assert table.returncode == 1
    assert all(" warn " in row for row in table.stdout.splitlines()[1:-1])

    kube.kubectl("-n", shop, "set", "image", "deployment/batch", f"batch={UBUNTU_IMAGE}")
    kube.kubectl("-n", shop, "delete", "pod", "legacy", "--wait=false")

    def fixed() -> dict[str, Any] | None:
        code, document = audit_json(kube, "--namespace", shop)
        return document if code == 0 else None

    document = wait_for(fixed, what="the fixed workloads to pass", timeout=30)
    assert {r["result"] for r in document["results"]} == {"pass"}
    assert not document["wouldDeny"]
    table = audit(kube, "--namespace", shop)
    assert table.returncode == 0
    assert table.stdout.startswith("0 fail, 0 warn, 0 error, 6 pass, 0 skip (3 objects, 1 policies")


def test_usage_and_connection_errors_exit_2(kube: Kube, crd: dict[str, Any], tmp_path: Path) -> None:
    assert audit(kube, "--namespace", f"absent-{uuid.uuid4().hex[:6]}").returncode == 2
    assert audit(kube, "--policy", str(tmp_path / "missing.yaml")).returncode == 2
    unreachable = {**kube.env, "KUBECONFIG": str(_unreachable_kubeconfig(tmp_path / "kubeconfig"))}
    result = subprocess.run(
        [IMAGE_GATE, "audit"], env=unreachable, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "the cluster could not be read" in result.stderr


def _unreachable_kubeconfig(path: Path) -> Path:
    config: Mapping[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:9", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "nobody", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "nobody"}}],
        "current-context": "gone",
    }
    path.write_text(yaml.safe_dump(dict(config)))
    return path
