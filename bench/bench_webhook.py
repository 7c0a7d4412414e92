"""
The webhook as the API server sees it: AdmissionReviews over HTTPS into ``image-gate run``.

Starts a control plane (for kopf's watches), cloudsim and image-gate as a process, applies
two policies, then POSTs Pod reviews concurrently, the way an API server does during a
rollout, and prints:

* latency p50 / p99 and reviews per second, cold (first sight of each image) and warm;
* upstream calls per API (single-flight and the cache: one per distinct image, then none).

Run from the repository root: ``python -m bench.bench_webhook [--reviews N] [--concurrency N]``. Not a test: it prints
figures. Needs the binaries of ``bash harness/build.sh``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from harness import ControlPlane, locate
from harness.process import free_ports
from tests import reviews
from tests.tlsutil import make_pki

from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState, Simulators

POLICIES = """\
apiVersion: imagegate.io/v1alpha1
kind: ImageGatePolicy
metadata: {name: approved-base-os}
spec:
  match: {images: ["swr.*.myhuaweicloud.com/**"]}
  baseImage: {allowedOS: [{name: Ubuntu, versions: [">=20.04"]}, {name: Debian}], deniedOS: [{name: CentOS}]}
---
apiVersion: imagegate.io/v1alpha1
kind: ImageGatePolicy
metadata: {name: pinned-acr}
spec:
  match: {images: ["*.*.cr.aliyuncs.com/**"]}
  digest: {matchRegistry: true}
"""


def review(namespace: str, images: list[str]) -> dict[str, Any]:
    containers = [{"name": f"c{n}", "image": image} for n, image in enumerate(images)]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"containers": containers},
    }
    return reviews.review(pod, uid=str(uuid.uuid4()), namespace=namespace, userInfo={"username": "bench"})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def hammer(url: str, ca: Path, bodies: list[dict[str, Any]], concurrency: int) -> tuple[list[float], float, int]:
    context = ssl.create_default_context(cafile=str(ca))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    denied = 0
    async with httpx.AsyncClient(verify=context, limits=limits, timeout=30) as client:

        async def one(body: dict[str, Any]) -> None:
            nonlocal denied
            async with semaphore:
                started = time.perf_counter()
                answer = await client.post(f"{url}/pods", json=body)
                latencies.append(time.perf_counter() - started)
                answer.raise_for_status()
                denied += not answer.json()["response"]["allowed"]

        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in bodies))
        return latencies, time.perf_counter() - started, denied


def report(label: str, latencies: list[float], wall: float, denied: int, calls: dict[str, int]) -> None:
    print(
        f"{label}: {len(latencies)} reviews in {wall:.2f}s = {len(latencies) / wall:,.0f} reviews/s; "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms; "
        f"{denied} denied"
    )
    print(f"  upstream calls: {', '.join(f'{api} {n}' for api, n in sorted(calls.items())) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--audit", action="store_true", help="policies in Audit mode: nothing denied, no Events")
    args = parser.parse_args()

    catalogue = Catalogue.load()
    swr = [str(i.reference) for i in catalogue.huawei_images() if i.huawei and i.huawei.base_image]
    acr = [f"{i.reference}@{i.digest}" for i in catalogue.aliyun_images()]
    pods = [[swr[n % len(swr)], swr[(n + 1) % len(swr)], acr[n % len(acr)]] for n in range(max(len(swr), len(acr)))]

    with tempfile.TemporaryDirectory() as tmp, ControlPlane(locate()) as cp:
        work = Path(tmp)
        pki = make_pki(work / "pki")
        state = SimState(catalogue=catalogue, hss_rate=None)
        with Simulators(catalogue, ssl_context=pki.server_context(), state=state) as sim:
            env = {**os.environ, **cp.env()}
            kubectl = [str(Path(cp.env()["PATH"].split(":")[0]) / "kubectl")]
            subprocess.run(
                [*kubectl, "apply", "-f", "charts/image-gate/crds/"], env=env, check=True, capture_output=True
            )
            subprocess.run(
                [*kubectl, "wait", "--for=condition=Established", "crd/imagegatepolicies.imagegate.io"],
                env=env,
                check=True,
                capture_output=True,
            )
            policies = POLICIES.replace("spec:\n", "spec:\n  mode: Audit\n") if args.audit else POLICIES
            subprocess.run(
                [*kubectl, "apply", "-f", "-"], input=policies.encode(), env=env, check=True, capture_output=True
            )
            huawei, aliyun = catalogue.huawei_credentials[0], catalogue.aliyun_credentials[0]
            port, health = free_ports(2)
            env.update(
                IMAGE_GATE_HSS_ENDPOINT=sim.hss_url,
                IMAGE_GATE_SAS_ENDPOINT=sim.sas_url,
                IMAGE_GATE_CLOUD_CA_FILE=str(pki.ca_file),
                IMAGE_GATE_HSS_RATE="1000/1",
                IMAGE_GATE_LOG_LEVEL="warning",
                HUAWEICLOUD_SDK_AK=huawei.ak,
                HUAWEICLOUD_SDK_SK=huawei.sk,
                HUAWEICLOUD_SDK_PROJECT_ID=huawei.project_id,
                ALIBABA_CLOUD_ACCESS_KEY_ID=aliyun.access_key_id,
                ALIBABA_CLOUD_ACCESS_KEY_SECRET=aliyun.access_key_secret,
            )
            gate = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "image_gate",
                    "run",
                    "--listen-address",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--health-port",
                    str(health),
                    "--cert-file",
                    str(pki.cert_file),
                    "--key-file",
                    str(pki.key_file),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(work / "image-gate.log").open("w"),
            )
            try:
                context = ssl.create_default_context(cafile=str(pki.ca_file))
                for _ in range(300):
                    try:
                        if httpx.get(f"https://127.0.0.1:{health}/readyz", verify=context).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                url = f"https://127.0.0.1:{port}"
                distinct = len({image for pod in pods for image in pod})
                print(
                    f"{len(pods)} distinct pods of 3 containers ({distinct} distinct images), "
                    f"2 policies, concurrency {args.concurrency}, over HTTPS into image-gate run (kopf)"
                )
                cold = [review("bench", pods[n % len(pods)]) for n in range(200)]
                report(
                    "cold", *asyncio.run(hammer(url, pki.ca_file, cold, args.concurrency)), sim.state.faults.snapshot()
                )
                before = sim.state.faults.snapshot()
                cpu_before = cpu_seconds(gate.pid)
                warm = [review("bench", pods[n % len(pods)]) for n in range(args.reviews)]
                latencies, wall, denied = asyncio.run(hammer(url, pki.ca_file, warm, args.concurrency))
                after = sim.state.faults.snapshot()
                cpu = cpu_seconds(gate.pid) - cpu_before
                report(
                    "warm",
                    latencies,
                    wall,
                    denied,
                    {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)},
                )
                print(
                    f"  image-gate process CPU: {cpu:.2f}s for {len(latencies)} reviews = "
                    f"{cpu / len(latencies) * 1000:.2f} ms per review (TLS, kopf, evaluation, logging); "
                    f"the client shares the machine's {os.cpu_count()} cores"
                )
                metrics = httpx.get(f"https://127.0.0.1:{health}/metrics", verify=context).text
                print(
                    "  "
                    + next(
                        line
                        for line in metrics.splitlines()
                        if line.startswith("image_gate_admission_review_duration_seconds_sum")
                    )
                )
            finally:
                gate.terminate()
                gate.wait(timeout=10)


if __name__ == "__main__":
    main()
