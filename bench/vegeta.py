"""
Driving one HTTPS target with vegeta (a Go load generator, built by ``harness/build.sh``) and reading its results.

vegeta rather than Python: a load generator in Python on the same two cores takes the CPU the
server under test needs, and closed-loop clients wait for answers instead of offering a rate.
Open-loop (``rate`` per second) is how an API server's load arrives; ``workers`` alone with no
rate is saturation: that many keep-alive connections, each sending its next request at once.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.binaries import BUILD_COMMAND, BinariesMissingError, bin_dir

__all__ = ["Result", "attack", "vegeta_binary"]

_ADDRESSES = re.compile(r"[\w.:\[\]]+:\d+->[\w.:\[\]]+:\d+:?|\"[^\"]*\"")
"""The connection's addresses and the URL in vegeta's error texts, so that one kind of error counts once."""


def vegeta_binary() -> Path:
    path = bin_dir() / "vegeta"
    if not path.exists():
        raise BinariesMissingError(f"missing vegeta in {path.parent}; build it with `{BUILD_COMMAND}`")
    return path


@dataclass(frozen=True, slots=True)
class Result:
    """One attack, read from vegeta's per-request records."""

    sent: int
    ok: int
    """Answered with HTTP 200."""
    errors: dict[str, int]
    """Everything else, by status code or vegeta's error text (timeouts, refused connections)."""
    latencies: list[float]
    """Seconds, of every request, answered or not."""
    wall: float
    """From the first request sent to the last answer received."""
    late: int
    """Answered (or given up on) after ``deadline`` seconds: the API server would have applied failurePolicy."""
    slowest_ok: float = 0.0
    """The latest HTTP 200, in seconds."""
    refused: int = 0
    """Answered HTTP 429 or 503: refused at once past capacity (counted in ``errors`` too)."""
    slowest_refused: float = 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

    @property
    def delivered(self) -> float:
        """Reviews answered with 200 per second of the attack."""
        return self.ok / self.wall if self.wall else 0.0


def attack(
    url: str,
    body: bytes,
    *,
    ca_file: Path,
    work: Path,
    duration: float,
    rate: int | None,
    workers: int,
    connections: int,
    deadline: float,
) -> Result:
    """``rate`` requests a second for ``duration`` (open loop, at most ``connections``), or ``workers``
    connections flat out when ``rate`` is None."""
    vegeta = vegeta_binary()
    target = {
        "method": "POST",
        "url": url,
        "body": base64.b64encode(body).decode(),
        "header": {"Content-Type": ["application/json"]},
    }
    targets = work / "targets.json"
    targets.write_text(json.dumps(target) + "\n")
    results = work / "results.bin"
    # Open loop: new workers (each its own connection) while the ones open are busy, up to
    # ``connections``; past that the offer waits, and `Result.sent` falls short of rate x duration.
    # API servers hold many connections to a webhook, so the cap is high (250 and 500 in bench_load); each
    # new one costs the server a TLS handshake, and a thousand at once cost more than the reviews: on a
    # loaded machine every server, even the aiohttp no-op, then answers a second late or more.
    # Saturated: exactly ``workers`` connections, each sending its next review at once.
    if rate:
        pace = [f"-rate={rate}/1s", f"-workers={workers}", f"-max-workers={connections}"]
    else:
        pace = ["-rate=0", f"-workers={workers}", f"-max-workers={workers}"]
    subprocess.run(
        [
            str(vegeta),
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-duration={duration}s",
            f"-root-certs={ca_file}",
            "-keepalive=true",
            "-http2=false",  # the servers speak HTTP/1.1 (aiohttp); say so rather than negotiate
            f"-timeout={2 * deadline}s",
            f"-output={results}",
            *pace,
        ],
        check=True,
    )
    encoded = subprocess.run(
        [str(vegeta), "encode", "-to=csv", str(results)], check=True, capture_output=True, text=True
    ).stdout
    return _read(encoded, deadline)


def _read(encoded: str, deadline: float) -> Result:
    # Columns: timestamp (ns), status code, latency (ns), bytes out, bytes in, error, body, attack, seq, ...
    latencies: list[float] = []
    errors: dict[str, int] = {}
    ok = late = refused = 0
    slowest_ok = slowest_refused = 0.0
    first = last = None
    for row in csv.reader(io.StringIO(encoded)):
        started, code, latency = int(row[0]) / 1e9, int(row[1]), int(row[2]) / 1e9
        latencies.append(latency)
        first = started if first is None else min(first, started)
        last = started + latency if last is None else max(last, started + latency)
        late += latency > deadline
        if code == 200:
            ok += 1
            slowest_ok = max(slowest_ok, latency)
        else:
            if code in (429, 503):
                refused += 1
                slowest_refused = max(slowest_refused, latency)
            reason = " ".join(_ADDRESSES.sub("", row[5]).split()).removeprefix("Post : ") or f"HTTP {code}"
            errors[reason] = errors.get(reason, 0) + 1
    wall = (last - first) if first is not None and last is not None else 0.0
    return Result(
        sent=len(latencies),
        ok=ok,
        errors=errors,
        latencies=latencies,
        wall=wall,
        late=late,
        slowest_ok=slowest_ok,
        refused=refused,
        slowest_refused=slowest_refused,
    )
