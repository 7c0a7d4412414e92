"""
The two reference webhooks of ``bench.bench_load``, each a process of its own, serving ``POST /pods`` over HTTPS.

* ``aiohttp``: parses the AdmissionReview and answers ``allowed: true`` for its uid -- what any
  Python webhook on aiohttp costs at the least (TLS, HTTP, JSON).
* ``kopf``: kopf's own ``WebhookServer`` with one ``@kopf.on.validate`` handler that returns
  nothing -- what kopf's admission machinery costs before a handler does any work. kopf needs a
  cluster to log in to (the bench's control plane, through ``KUBECONFIG``).

Run by the benchmark: ``python -m bench.noop_webhooks {aiohttp,kopf} --port N --cert-file F --key-file F``.
Both log at WARNING, so neither pays for a per-request log line (image-gate's default writes one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
from typing import Any

__all__ = ["main"]


def serve_aiohttp(port: int, cert_file: str, key_file: str) -> None:
    from aiohttp import web

    async def review(request: web.Request) -> web.Response:
        body: Any = json.loads(await request.read())
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": body["request"]["uid"], "allowed": True},
        }
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    app = web.Application()
    app.router.add_post("/pods", review)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


def serve_kopf(port: int, cert_file: str, key_file: str) -> None:
    import kopf

    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.validate("pods", id="pods", registry=registry)
    def validate(**_: Any) -> None:
        """Admits everything: only kopf's own work is measured."""

    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.admission.managed = None
    settings.admission.server = kopf.WebhookServer(
        addr="127.0.0.1", port=port, host="127.0.0.1", certfile=cert_file, pkeyfile=key_file
    )
    asyncio.run(kopf.operator(registry=registry, settings=settings, clusterwide=True, standalone=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("aiohttp", "kopf"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-file", required=True)
    parser.add_argument("--key-file", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    serve = serve_aiohttp if args.kind == "aiohttp" else serve_kopf
    serve(args.port, args.cert_file, args.key_file)


if __name__ == "__main__":
    main()
