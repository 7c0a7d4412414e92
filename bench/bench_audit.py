"""
One audit pass over a cluster of 5,000 pods with warm facts: CPU and memory.

The cluster: 100 namespaces (a third opted in to ``warn-unpinned``), 500
Deployments of 10 pods each, every pod with an app container, a sidecar and an
init container. App images are drawn from 300 SWR and ACR repositories (some
pinned by digest, a tenth built on CentOS, a few ACR pins stale), sidecars and
init containers from a dozen shared images, some from Docker Hub that no
policy covers. The policies are the three in ``examples/policies``. Every fact
is stored (warm), served by a dict behind the `KnownFacts` protocol (what the
fact store's index is).

Timed with ``time.process_time`` (CPU of this process): reading the bodies
(`audited_object`, done per watch event in production, not per pass), then the
pass proper: `audit` plus building every namespace's report and every
policy's ``status.audit``. Memory: ``tracemalloc``'s peak above what the
objects already took, in a second, separate pass (tracing slows Python down, so
it is not timed). The issue's goal: < 10 s CPU, < 100 MiB.

Run from the repository root: ``python -m bench.bench_audit [--pods 5000] [--repositories 300]``
(``--repositories 5000``: every Deployment its own app image, the worst case for the pass's memo).
Not a test: it prints figures. On the 2-core development machine, shared
with other work (load average ~4, 2026-12-02):

    $ python -m bench.bench_audit
    cluster: 5000 pods + 500 workloads (500 ReplicaSets audited through their Deployment),
      16500 containers, 260 distinct images, 100 namespaces; policies approved-base-os, pinned-acr, warn-unpinned
    reading the bodies (audited_object): 0.075 s CPU
    results: 25487 (fail 858, pass 19690, skip 2310, warn 2629); 25487 in the reports; 0 facts missing
    pass: 0.238 s CPU = audit 0.106 + reports 0.128 + statuses 0.003
      (best of 3 per stage; the 3 passes: 0.257, 0.278, 0.252 s)
    memory: peak 21.9 MiB above the objects; 3.8 MiB retained

    $ python -m bench.bench_audit --repositories 5000
    cluster: 5000 pods + 500 workloads (500 ReplicaSets audited through their Deployment),
      16500 containers, 487 distinct images, 100 namespaces; policies approved-base-os, pinned-acr, warn-unpinned
    reading the bodies (audited_object): 0.090 s CPU
    results: 26136 (fail 748, pass 20636, skip 2189, warn 2563); 26136 in the reports; 0 facts missing
    pass: 0.226 s CPU = audit 0.138 + reports 0.084 + statuses 0.004
      (best of 3 per stage; the 3 passes: 0.315, 0.278, 0.259 s)
    memory: peak 22.4 MiB above the objects; 3.9 MiB retained

    $ python -m bench.bench_audit --pods 50000
    cluster: 50000 pods + 5000 workloads (5000 ReplicaSets audited through their Deployment),
      165000 containers, 309 distinct images, 100 namespaces; policies approved-base-os, pinned-acr, warn-unpinned
    reading the bodies (audited_object): 0.751 s CPU
    results: 258280 (fail 7777, pass 200530, skip 23936, warn 26037); 100000 in the reports; 0 facts missing
    pass: 1.947 s CPU = audit 1.192 + reports 0.720 + statuses 0.035
      (best of 3 per stage; the 3 passes: 2.552, 2.068, 2.254 s)
    memory: peak 112.7 MiB above the objects; 35.9 MiB retained

A pass over 5,000 pods: ~0.2 s of CPU and ~22 MiB at its peak (most of it the
report documents, freed once written): 50 times below the CPU goal, 4-5 times
below the memory one. Ten times the pods cost ten times as much.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from image_gate.core.audit import AuditedObject, AuditPass, audit, audited_object
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found
from image_gate.core.policy import CompiledPolicy, compile_policy
from image_gate.core.reports import policy_audit_status, policy_reports

POLICY_DIR = Path(__file__).resolve().parents[1] / "examples" / "policies"
SWR = "swr.cn-north-4.myhuaweicloud.com"
ACR = "shop-registry.cn-hangzhou.cr.aliyuncs.com"
NAMESPACES = 100
REPLICAS = 10
REPOSITORIES = 300


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def example_policies() -> list[CompiledPolicy]:
    policies = []
    for path in sorted(POLICY_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        policies.append(compile_policy(document["metadata"]["name"], document["spec"]))
    return policies


class WarmFacts:
    """Every image's facts, stored: SWR images have a base image, ACR tags a registry digest."""

    def __init__(self) -> None:
        self.asked = 0

    def known(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        self.asked += 1
        name = image.repository
        base = None
        if base_image:
            os = ("CentOS Linux", "7.9.2009") if name.endswith("0") else ("Debian GNU/Linux", "12")
            base = Found(BaseImage(os[0], os[1], _digest_of(f"base-{os[0]}")))
        registry = None
        if digest:  # a tenth of the pins are stale: the registry serves another digest now
            stale = name.endswith("3")
            registry = Found(_digest_of(f"{name}:{image.tag}{'-repushed' if stale else ''}"))
        return ImageFacts(base_image=base, registry_digest=registry)


def _digest_of(text: str) -> str:
    return digest(text)


def app_images(rng: random.Random, repositories: int) -> list[str]:
    images = []
    for n in range(repositories):
        if n % 3 == 0:  # ACR, half pinned tag@digest
            repository, tag = f"shop/svc{n}", f"1.{n % 7}"
            reference = f"{ACR}/{repository}:{tag}"
            if rng.random() < 0.5:
                reference += "@" + digest(f"{repository}:{tag}")
        else:  # SWR, a fifth pinned
            repository, tag = f"shop/app{n}", f"2.{n % 5}"
            reference = f"{SWR}/{repository}:{tag}"
            if rng.random() < 0.2:
                reference += "@" + digest(f"{repository}:{tag}")
        images.append(reference)
    return images


SIDECARS = [
    f"{SWR}/mesh/proxyv2:1.22.1",
    f"{SWR}/mesh/proxyv2:1.22.1@" + digest("mesh/proxyv2:1.22.1"),
    "docker.io/fluent/fluent-bit:3.0",
    f"{SWR}/observability/otel-agent:0.98",
    "nginx:1.27",
]
INITS = [f"{SWR}/platform/init-config:4", "busybox:1.36", f"{ACR}/platform/migrate:7", f"{SWR}/platform/wait-db:1"]


def cluster(
    pods: int, repositories: int, seed: int = 7
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, str]]]:
    """(kind, body) of every Deployment, ReplicaSet and Pod; and the namespaces' labels."""
    rng = random.Random(seed)
    apps = app_images(rng, repositories)
    labels = {
        f"team-{n:03d}": ({"imagegate.io/pinning": "warn"} if n % 3 == 0 else {"team": str(n)})
        for n in range(NAMESPACES)
    }
    namespaces = sorted(labels)
    bodies: list[tuple[str, dict[str, Any]]] = []
    for d in range(max(1, pods // REPLICAS)):
        namespace = namespaces[d % NAMESPACES]
        name = f"app-{d}"
        template = {
            "spec": {
                "initContainers": [{"name": "init", "image": rng.choice(INITS)}],
                "containers": [
                    {"name": "app", "image": rng.choice(apps)},
                    {"name": "sidecar", "image": rng.choice(SIDECARS)},
                ],
            }
        }
        meta = {"namespace": namespace, "name": name, "uid": f"uid-deploy-{d}"}
        bodies.append(("Deployment", {"metadata": meta, "spec": {"template": template}}))
        owner = [{"kind": "Deployment", "name": name, "controller": True}]
        rs_meta = {**meta, "name": f"{name}-5d8f", "uid": f"uid-rs-{d}", "ownerReferences": owner}
        bodies.append(("ReplicaSet", {"metadata": rs_meta, "spec": {"template": template}}))
        for r in range(REPLICAS):
            pod_owner = [{"kind": "ReplicaSet", "name": f"{name}-5d8f", "controller": True}]
            pod_meta = {"namespace": namespace, "name": f"{name}-5d8f-{r}", "uid": f"uid-pod-{d}-{r}"}
            bodies.append(("Pod", {"metadata": {**pod_meta, "ownerReferences": pod_owner}, **template}))
    return bodies, labels


def one_pass(
    objects: list[AuditedObject], policies: list[CompiledPolicy], labels: Mapping[str, Mapping[str, str]]
) -> tuple[AuditPass, int, tuple[float, float, float]]:
    """The pass as the leader runs it: judge, then every report and every policy's status; CPU of each."""
    facts = WarmFacts()
    started = time.process_time()
    result = audit(objects, policies, lambda namespace: labels.get(namespace, {}), facts)
    judged = time.process_time()
    reports = policy_reports(result.results, flavour="wgpolicy", timestamps=lambda _: 1_764_668_700.0)
    reported = time.process_time()
    statuses = [policy_audit_status(result.results, name, at=time.time()) for name in result.policies]
    done = time.process_time()
    listed = sum(len(report["results"]) for report in reports.values())
    assert len(statuses) == len(policies)
    return result, listed, (judged - started, reported - judged, done - reported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument(
        "--repositories", type=int, default=REPOSITORIES, help="app images to draw from (more: fewer shared)"
    )
    args = parser.parse_args()
    policies = example_policies()
    bodies, labels = cluster(args.pods, args.repositories)

    started = time.process_time()
    read = [audited_object(kind, body) for kind, body in bodies]
    reading = time.process_time() - started
    objects = [obj for obj in read if obj is not None]
    pods = sum(1 for obj in objects if obj.kind == "Pod")
    containers = sum(len(obj.containers) for obj in objects)
    images = len({c.image for obj in objects for c in obj.containers})
    print(
        f"cluster: {pods} pods + {len(objects) - pods} workloads ({len(bodies) - len(objects)} ReplicaSets "
        f"audited through their Deployment),\n  {containers} containers, {images} distinct images, "
        f"{len(labels)} namespaces; policies {', '.join(p.name for p in policies)}"
    )
    print(f"reading the bodies (audited_object): {reading:.3f} s CPU")

    runs = [one_pass(objects, policies, labels) for _ in range(3)]
    result, listed, _ = runs[0]
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r.result] = counts.get(r.result, 0) + 1
    print(
        f"results: {len(result.results)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
        f"{listed} in the reports; {len(result.missing)} facts missing"
    )
    judge, report, status = (min(run[2][stage] for run in runs) for stage in range(3))
    totals = ", ".join(f"{sum(run[2]):.3f}" for run in runs)
    print(
        f"pass: {judge + report + status:.3f} s CPU = audit {judge:.3f} + reports {report:.3f} "
        f"+ statuses {status:.3f}\n  (best of 3 per stage; the 3 passes: {totals} s)"
    )

    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    kept = one_pass(objects, policies, labels)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mib = 1024 * 1024
    print(f"memory: peak {(peak - before) / mib:.1f} MiB above the objects; {(after - before) / mib:.1f} MiB retained")
    del kept


if __name__ == "__main__":
    main()
