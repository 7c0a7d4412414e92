"""
``image-gate run``: kopf (standalone, cluster-wide), the HTTPS webhook and the health server.

kopf runs without its managed webhook configuration: the Helm chart owns the
ValidatingWebhookConfiguration (kopf's would hard-code ``timeoutSeconds: 30``
and no namespaceSelector, and with several replicas each would rewrite it).
``standalone`` because peering would pause the policy watch in all replicas
but one, while every replica keeps answering reviews from its index.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import kopf

from image_gate.app.certs import ReloadingContext, ServingCertificate, generate_development_certificate
from image_gate.app.health import serve_health
from image_gate.app.metrics import Metrics
from image_gate.app.settings import Settings
from image_gate.app.sharing import fact_sharing
from image_gate.app.wiring import fact_resolver
from image_gate.core.admission import Admission
from image_gate.kube.controller import register_controller
from image_gate.kube.events import DenialEvents
from image_gate.kube.readiness import Readiness
from image_gate.kube.webhook import WebhookApp, guarded, register_webhooks

__all__ = ["run_operator", "serving_certificate"]

logger = logging.getLogger(__name__)


@dataclass
class ListeningWebhookServer:
    """kopf's webhook server, telling `Readiness` once it listens; reviews go through `guarded`."""

    server: kopf.WebhookServer
    readiness: Readiness

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in self.server(guarded(fn)):
            self.readiness.webhook_listening = True
            yield config


def registry_login(registry: kopf.OperatorRegistry) -> None:
    """Log in as kubectl would: in-cluster service account first, else the kubeconfig.

    kopf's own fallbacks would prefer the ``kubernetes`` package when it is
    installed; the image does not ship it, and one code path everywhere is
    easier to reason about.
    """

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def serving_certificate(settings: Settings) -> ServingCertificate:
    if settings.cert_file is not None and settings.key_file is not None:
        return ServingCertificate(cert_file=settings.cert_file, key_file=settings.key_file)
    certificate = generate_development_certificate(settings.cert_dir, [settings.webhook_host, "localhost"])
    logger.warning(
        "no --cert-file/--key-file: generated a development certificate; give the API server %s as caBundle",
        certificate.ca_file,
    )
    return certificate


def kopf_settings(settings: Settings, certificate: ServingCertificate, readiness: Readiness) -> kopf.OperatorSettings:
    operator_settings = kopf.OperatorSettings()
    operator_settings.peering.standalone = True
    operator_settings.admission.managed = None
    operator_settings.admission.server = ListeningWebhookServer(
        kopf.WebhookServer(
            addr=settings.listen_address,
            port=settings.port,
            host=settings.webhook_host,
            certfile=str(certificate.cert_file),
            pkeyfile=str(certificate.key_file),
            cafile=str(certificate.ca_file) if certificate.ca_file else None,
        ),
        readiness,
    )
    # kopf turns handler log lines into Kubernetes Events; only problems deserve one.
    operator_settings.posting.level = logging.WARNING
    operator_settings.posting.reporting_component = "image-gate"
    operator_settings.posting.reporting_instance = socket.gethostname()  # the pod's name in a cluster
    return operator_settings


async def run_operator(settings: Settings) -> None:
    metrics = Metrics()
    readiness = Readiness()
    certificate = serving_certificate(settings)
    tls = ReloadingContext(certificate)
    registry = kopf.OperatorRegistry()
    registry_login(registry)
    events = DenialEvents()
    register_controller(registry, readiness=readiness, metrics=metrics, events=events)
    sharing = fact_sharing(settings, metrics, registry)
    async with (
        fact_resolver(settings, metrics=metrics, calls=sharing.calls) as resolver,
        sharing.source(resolver) as facts,
    ):
        admission = Admission(facts, deadline=settings.deadline)
        webhook = WebhookApp(admission, metrics, readiness, settings.exempt_namespaces, post_event=events.post)
        register_webhooks(registry, webhook)
        health = asyncio.create_task(
            serve_health(
                address=settings.listen_address,
                port=settings.health_port,
                tls=tls,
                readiness=readiness,
                metrics=metrics,
                breakers=resolver.breakers,
            ),
            name="image-gate health server",
        )
        try:
            await kopf.operator(
                registry=registry,
                settings=kopf_settings(settings, certificate, readiness),
                clusterwide=True,
                standalone=True,
            )
        finally:
            health.cancel()
            await asyncio.gather(health, return_exceptions=True)
