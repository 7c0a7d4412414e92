"""
Throughput and latency under load, the way a cluster would see it, beside two no-op references.

Starts, on this machine's cores:

* image-gate (``image-gate run``, its defaults: INFO logs, one line per review) with a control plane
  for kopf's watches, cloudsim for the clouds and the three example policies (examples/policies),
  warmed so that every fact is cached;
* a no-op aiohttp HTTPS webhook and a no-op kopf webhook (``bench.noop_webhooks``);

then drives each with vegeta (Go; ``bash harness/build.sh`` builds it), keep-alive TLS, the same
3-container Pod AdmissionReview posted to ``/pods?timeout=5s`` (the API server adds the webhook's
``timeoutSeconds`` so): open loop at 300, 600 and 1,000 reviews/s (up to 250 connections, as an API
server opens them: 1,000 reviews/s are held back only if answers take longer than 0.25 s), and
saturated (a fixed number of connections, each sending its next review at once). The three targets
take turns at each level, so the machine's load falls on all of them alike. Then image-gate alone
at three times the rate it delivered saturated, open loop, up to 500 connections: past capacity it
refuses at once (HTTP 429) what it could not answer within the timeout.

Prints, per run, p50 / p99 / max latency, the rate delivered (HTTP 200s per second), errors and
answers later than the timeout; then the ratios to the kopf no-op (throughput, and CPU per review,
which moves less with the machine's load), image-gate's CPU per review (reviews per second per core:
the figure for the chart's HorizontalPodAutoscaler), the overload run (refused, the latest answer
against the timeout), its log lines per review, and RSS: each server after the load, and a process
holding 100,000 facts (``bench.fact_memory``).

Run from the repository root: ``python -m bench.bench_load [--quick]`` (about 4 minutes; ``--quick``
about 40 s of load). Not a test: it prints figures, and they move with the machine's load (other
processes on the same cores): judge by the ratios of one run, and run again when the load average
printed at the start is high.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from harness import ControlPlane, locate
from harness.process import free_ports
from tests.tlsutil import TestPki, make_pki

from bench.fact_memory import rss_mib
from bench.vegeta import Result, attack, vegeta_binary
from cloudsim.catalogue import Catalogue
from cloudsim.server import SimState, Simulators

NAMESPACE = "bench"
POD_IMAGES = (
    "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2",  # Ubuntu 22.04: allowed
    "swr.cn-north-4.myhuaweicloud.com/demo/worker:3.1.0",  # Debian 12: allowed
    "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.1"
    "@sha256:8819236b5d5363b7de82e88ee6ccddbb9efd840367af1f7ecb59307c0207a911",  # the tag's current digest
)
"""Allowed by all three example policies; warn-unpinned (the namespace opts in) warns of both SWR tags."""
WEBHOOK_TIMEOUT = 5.0
"""The chart's ``webhook.timeoutSeconds``: an answer later than this never reaches the API server."""
REVIEW_LOGGER = "image_gate.admission"
OVERLOAD = "3x capacity"
"""The overload run's connections (``--overload-connections``, 500 by default) are about what two or three
API servers hold in flight (200 mutating requests each by default); over HTTP/1.1 a connection carries one
review at a time, so the queue image-gate sees is at most that."""


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str


def admission_review() -> dict[str, Any]:
    containers = [{"name": f"c{n}", "image": image} for n, image in enumerate(POD_IMAGES)]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web-7d4b9c8f6d-x2k9p", "namespace": NAMESPACE, "labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
            "dryRun": False,
        },
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kubectl(cp: ControlPlane, *args: str, stdin: bytes | None = None) -> None:
    binary = str(locate().kubectl)
    subprocess.run([binary, *args], input=stdin, env={**os.environ, **cp.env()}, check=True, capture_output=True)


def apply_policies(cp: ControlPlane) -> None:
    kubectl(cp, "apply", "-f", "charts/image-gate/crds/")
    kubectl(cp, "wait", "--for=condition=Established", "crd/imagegatepolicies.imagegate.io")
    kubectl(cp, "create", "namespace", NAMESPACE)
    kubectl(cp, "label", "namespace", NAMESPACE, "imagegate.io/pinning=warn")
    kubectl(cp, "apply", "-f", "examples/policies/")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


@contextmanager
def servers(
    cp: ControlPlane, sim: Simulators, catalogue: Catalogue, pki: TestPki, work: Path
) -> Iterator[list[Server]]:
    """The three targets, started, each answering a review."""
    env = {**os.environ, **cp.env()}
    tls = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file)]
    aiohttp_port, kopf_port, gate_port, health_port = free_ports(4)
    huawei, aliyun = catalogue.huawei_credentials[0], catalogue.aliyun_credentials[0]
    gate_env = {
        **env,
        "IMAGE_GATE_HSS_ENDPOINT": sim.hss_url,
        "IMAGE_GATE_SAS_ENDPOINT": sim.sas_url,
        "IMAGE_GATE_CLOUD_CA_FILE": str(pki.ca_file),
        "HUAWEICLOUD_SDK_AK": huawei.ak,
        "HUAWEICLOUD_SDK_SK": huawei.sk,
        "HUAWEICLOUD_SDK_PROJECT_ID": huawei.project_id,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": aliyun.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": aliyun.access_key_secret,
    }
    noop = [sys.executable, "-m", "bench.noop_webhooks"]
    gate = [sys.executable, "-m", "image_gate", "run", "--listen-address", "127.0.0.1"]
    started: list[Server] = []
    try:
        for name, command, port, server_env in (
            ("aiohttp no-op", [*noop, "aiohttp", "--port", str(aiohttp_port), *tls], aiohttp_port, env),
            ("kopf no-op", [*noop, "kopf", "--port", str(kopf_port), *tls], kopf_port, env),
            (
                "image-gate",
                [*gate, "--port", str(gate_port), "--health-port", str(health_port), *tls],
                gate_port,
                gate_env,
            ),
        ):
            process = start(command, server_env, work / f"{name.replace(' ', '-')}.log")
            started.append(Server(name, process, f"https://127.0.0.1:{port}/pods?timeout={WEBHOOK_TIMEOUT:g}s"))
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        with httpx.Client(verify=context, timeout=10) as client:
            for server in started:
                answer_once(client, server)
            # Warm: the first reviews start the lookups. Both enforcing policies deny what they cannot
            # resolve, so an allowed review is one whose every fact is cached.
            for _ in range(100):
                if answer_once(client, started[-1])["response"]["allowed"]:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("image-gate never allowed the bench's Pod; see its log")
        yield started
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            server.process.wait(timeout=15)


def answer_once(client: httpx.Client, server: Server) -> Any:
    """POST one review, retrying while the server starts (up to 60 s)."""
    for _ in range(600):
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}; see its log")
        try:
            answer = client.post(server.url, json=admission_review())
            if answer.status_code == 200:
                return answer.json()
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer in 60 s")


@dataclass(frozen=True, slots=True)
class Run:
    level: str
    target: str
    result: Result
    cpu: float
    """The target's CPU seconds during the run."""


def drive(
    servers: list[Server],
    ca_file: Path,
    work: Path,
    duration: float,
    workers: int,
    connections: int,
    overload_connections: int,
) -> list[Run]:
    body = json.dumps(admission_review()).encode()

    def one_run(server: Server, level: str, rate: int | None, connections: int, *, label: str | None = None) -> Run:
        """Drive ``server`` at ``rate`` (None: saturated), print its line, and keep it (as ``label`` or ``level``)."""
        before = cpu_seconds(server.process.pid)
        result = attack(
            server.url,
            body,
            ca_file=ca_file,
            work=work,
            duration=duration,
            rate=rate,
            workers=workers,
            connections=connections,
            deadline=WEBHOOK_TIMEOUT,
        )
        print(f"  {level:<22} {server.name:<14} {summary(result, rate, duration)}", flush=True)
        return Run(label or level, server.name, result, cpu_seconds(server.process.pid) - before)

    levels: list[tuple[str, int | None]] = [("300 rps", 300), ("600 rps", 600), ("1,000 rps", 1000)]
    levels.append((f"saturated, {workers} conns", None))
    runs: list[Run] = []
    for level, rate in levels:
        for server in servers:
            runs.append(one_run(server, level, rate, connections))
            time.sleep(1)  # let a queue left by the last run drain before the next target's
    gate = servers[-1]
    capacity = next(run.result.delivered for run in runs if run.level == levels[-1][0] and run.target == gate.name)
    rate = max(1, round(3 * capacity))
    level = f"{OVERLOAD} ({rate:,} rps)"
    runs.append(one_run(gate, level, rate, overload_connections, label=OVERLOAD))
    return runs


def summary(result: Result, rate: int | None, duration: float) -> str:
    errors = ", ".join(f"{count} {reason[-60:]}" for reason, count in sorted(result.errors.items())) or "none"
    sent = f"sent {result.sent:,}" + (f" of {rate * duration:,.0f}" if rate else "")
    return (
        f"{sent:<17} "
        f"p50 {result.percentile(0.5) * 1000:8.1f} ms  p99 {result.percentile(0.99) * 1000:8.1f} ms  "
        f"max {max(result.latencies, default=0) * 1000:8.1f} ms  delivered {result.delivered:7,.0f}/s  "
        f"late (>{WEBHOOK_TIMEOUT:g}s) {result.late}  errors: {errors}"
    )


def ratios(runs: list[Run], workers: int, duration: float) -> None:
    by = {(run.level, run.target): run for run in runs}
    saturated = f"saturated, {workers} conns"
    gate, kopf = by[(saturated, "image-gate")].result, by[(saturated, "kopf no-op")].result
    aio = by[(saturated, "aiohttp no-op")].result
    print("ratios (goals of issue 12 in brackets):")
    print(
        f"  saturated throughput, image-gate / kopf no-op: {gate.delivered / kopf.delivered:.0%} [>= 80%]"
        f"   (kopf no-op / aiohttp no-op: {kopf.delivered / aio.delivered:.0%})"
    )
    gate600, kopf600 = by[("600 rps", "image-gate")].result, by[("600 rps", "kopf no-op")].result
    print(
        f"  p99 at 600 rps, image-gate / kopf no-op: {gate600.percentile(0.99) / kopf600.percentile(0.99):.1f}x [<= 3x]"
        f"   (delivered: image-gate {gate600.delivered:,.0f}/s, kopf no-op {kopf600.delivered:,.0f}/s)"
    )
    gate1000 = by[("1,000 rps", "image-gate")].result
    print(
        f"  1,000 rps: image-gate answered {gate1000.ok:,} of {gate1000.sent:,} sent ({duration * 1000:,.0f} offered), "
        f"{gate1000.late} later than {WEBHOOK_TIMEOUT:g} s, slowest {gate1000.slowest_ok:.2f} s "
        "[all answered, none late]"
    )
    per_review = {
        target: by[(saturated, target)].cpu / max(by[(saturated, target)].result.ok, 1)
        for target in ("aiohttp no-op", "kopf no-op", "image-gate")
    }
    print(
        "  CPU per review, saturated: "
        + ", ".join(f"{target} {seconds * 1e6:,.0f} us" for target, seconds in per_review.items())
        + f"; kopf no-op / image-gate: {per_review['kopf no-op'] / per_review['image-gate']:.0%} [>= 80%]"
    )
    cpu = by[(saturated, "image-gate")].cpu
    if cpu:
        print(
            f"  image-gate CPU, saturated: {cpu / max(gate.ok, 1) * 1000:.2f} ms per review = "
            f"{gate.ok / cpu:,.0f} reviews/s per core (TLS, kopf, evaluation, logging)"
        )
    over = by[(OVERLOAD, "image-gate")].result
    print(
        f"  3x capacity: {over.sent:,} sent, {over.ok:,} answered ({over.delivered:,.0f}/s), {over.refused:,} refused "
        f"at once (HTTP 429; slowest refusal {over.slowest_refused * 1000:,.0f} ms); slowest answer "
        f"{over.slowest_ok:.2f} s, slowest of all {max(over.latencies, default=0):.2f} s, against the "
        f"{WEBHOOK_TIMEOUT:g} s timeout: {over.late} late [none late]"
    )


def log_summary(lines: list[str]) -> str:
    """How many lines, and whose: the review lines (one per review judged) and any other logger's."""
    loggers: dict[str, int] = {}
    for line in lines:
        try:
            name = str(json.loads(line).get("logger"))
        except ValueError:
            name = "(not JSON)"
        loggers[name] = loggers.get(name, 0) + 1
    reviews = loggers.pop(REVIEW_LOGGER, 0)
    others = ", ".join(f"{name} {count:,}" for name, count in sorted(loggers.items())) or "none"
    return f"{len(lines):,} lines: {reviews:,} review lines ({REVIEW_LOGGER}), other lines: {others}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 s per attack, 10,000 facts")
    parser.add_argument("--duration", type=float, help="seconds per attack (default 6, --quick 2)")
    parser.add_argument("--workers", type=int, default=16, help="connections when saturated (default 16)")
    parser.add_argument(
        "--connections", type=int, default=250, help="most connections in the open-loop runs (default 250)"
    )
    parser.add_argument(
        "--overload-connections", type=int, default=500, help="most connections at 3x capacity (default 500)"
    )
    parser.add_argument("--facts", type=int, help="facts held for the memory figure (default 100,000)")
    args = parser.parse_args()
    duration = args.duration or (2.0 if args.quick else 6.0)
    facts = args.facts or (10_000 if args.quick else 100_000)
    vegeta_binary()  # fail before starting anything when it is missing

    catalogue = Catalogue.load()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        # The memory figure's process fills its facts while the control plane starts, not during the load.
        memory = subprocess.Popen(
            [sys.executable, "-m", "bench.fact_memory", "--facts", str(facts)], stdout=subprocess.PIPE, text=True
        )
        cp = stack.enter_context(ControlPlane(locate()))
        pki = make_pki(work / "pki")
        sim = stack.enter_context(
            Simulators(catalogue, ssl_context=pki.server_context(), state=SimState(catalogue=catalogue, hss_rate=None))
        )
        apply_policies(cp)
        started = stack.enter_context(servers(cp, sim, catalogue, pki, work))
        held, _ = memory.communicate()
        print(
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; vegeta, keep-alive TLS, "
            f"{duration:g} s per run (open loop: at most {args.connections} connections); "
            "one 3-container Pod review, the 3 example policies, every fact cached"
        )
        log = work / "image-gate.log"
        logged_before = len(log.read_text(errors="replace").splitlines())
        rss_idle = {server.name: rss_mib(server.process.pid) for server in started}
        runs = drive(started, pki.ca_file, work, duration, args.workers, args.connections, args.overload_connections)
        logged = log.read_text(errors="replace").splitlines()[logged_before:]
        ratios(runs, args.workers, duration)
        print(f"image-gate's log at INFO during the load: {log_summary(logged)}")
        print(
            "RSS warm, before the load: "
            + ", ".join(f"{name} {rss:.0f} MiB" for name, rss in rss_idle.items())
            + "; after it (every connection vegeta opened still held): "
            + ", ".join(f"{server.name} {rss_mib(server.process.pid):.0f} MiB" for server in started)
        )
        figure = json.loads(held)
        print(
            f"RSS with {figure['facts']:,} facts (index {figure['index']:,} + cache entries {figure['cached']:,}): "
            f"{figure['rss_after_mib']:.0f} MiB (modules alone {figure['rss_before_mib']:.0f}, "
            f"+ index {figure['rss_indexed_mib'] - figure['rss_before_mib']:.0f}, "
            f"+ caches {figure['rss_after_mib'] - figure['rss_indexed_mib']:.0f}) [<= 200 MiB per replica]"
        )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
