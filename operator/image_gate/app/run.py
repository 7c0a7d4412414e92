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
from typing import Any

import kopf

from image_gate.app.auditing import auditing
from image_gate.app.certs import ReloadingContext, ServingCertificate, generate_development_certificate
from image_gate.app.health import serve_health
from image_gate.app.metrics import Metrics
from image_gate.app.mirroring import hss_inventory, mirror_with_leadership
from image_gate.app.settings import Settings
from image_gate.app.sharing import fact_sharing
from image_gate.app.stopping import GracefulStop
from image_gate.app.wiring import fact_resolver
from image_gate.core.admission import Admission
from image_gate.kube.controller import POLICY_RESOURCE, register_controller
from image_gate.kube.events import DenialEvents
from image_gate.kube.factstore import settle_watch_workers
from image_gate.kube.kubeapi import KubeApi
from image_gate.kube.memos import WatchedOnlyMemories
from image_gate.kube.namespaces import NamespaceLabels, read_namespace_labels
from image_gate.kube.overload import LoadShedder
from image_gate.kube.readiness import Readiness
from image_gate.kube.server import ReviewServer
from image_gate.kube.watchhealth import WatchHealth
from image_gate.kube.webhook import WebhookApp, register_webhooks

__all__ = ["run_operator", "serving_certificate"]

logger = logging.getLogger(__name__)


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


def kopf_settings(server: ReviewServer) -> kopf.OperatorSettings:
    operator_settings = kopf.OperatorSettings()
    operator_settings.peering.standalone = True
    operator_settings.admission.managed = None
    operator_settings.admission.server = server
    # kopf turns handler log lines into Kubernetes Events; only problems deserve one.
    operator_settings.posting.level = logging.WARNING
    operator_settings.posting.reporting_component = "image-gate"
    operator_settings.posting.reporting_instance = socket.gethostname()  # the pod's name in a cluster
    settle_watch_workers(operator_settings)
    return operator_settings


def review_server(settings: Settings, tls: ReloadingContext, readiness: Readiness) -> ReviewServer:
    def listening() -> None:
        readiness.webhook_listening = True

    return ReviewServer(
        address=settings.listen_address,
        port=settings.port,
        ssl_context=tls.context,
        url_host=settings.webhook_host,
        max_review_bytes=settings.max_review_bytes,
        on_listening=listening,
        access_log=settings.debug_http_logs,
    )


async def run_operator(settings: Settings) -> None:
    metrics = Metrics()
    watches = WatchHealth({POLICY_RESOURCE[2], "namespaces"})
    watches.install()
    readiness = Readiness(watches)
    certificate = serving_certificate(settings)
    webhook_tls = ReloadingContext(certificate, client_ca_file=settings.client_ca_file)
    # Probes (kubelet) and scrapes present no client certificate: the health port never asks for one.
    health_tls = ReloadingContext(certificate) if settings.client_ca_file else webhook_tls
    server = review_server(settings, webhook_tls, readiness)
    stopping = GracefulStop(readiness=readiness, drain=server.drain, drain_seconds=settings.drain_seconds)
    registry = kopf.OperatorRegistry()
    registry_login(registry)
    events = DenialEvents()
    register_controller(registry, readiness=readiness, metrics=metrics, events=events)
    sharing = fact_sharing(settings, metrics, registry)
    inventory = hss_inventory(settings, metrics)
    async with (
        fact_resolver(settings, metrics=metrics, calls=sharing.calls, inventory=inventory) as resolver,
        sharing.source(resolver) as facts,
        auditing(settings, registry, sharing, facts),
    ):
        mirror_with_leadership(sharing, facts, inventory)
        admission = Admission(facts, deadline=settings.deadline)
        # Past capacity, what cannot be answered in time is refused at once; reviews waiting for facts
        # use no CPU and are not counted in the queue.
        server.shedder = LoadShedder(default_budget=settings.deadline, lookups=admission)
        server.on_shed = metrics.review_shed
        namespaces_api = KubeApi(timeout=5.0)  # a GET that outlasts a review's wait still serves the next one
        webhook = WebhookApp(
            admission,
            metrics,
            readiness,
            settings.exempt_namespaces,
            post_event=events.post,
            namespaces=NamespaceLabels(read_namespace_labels(namespaces_api)),
        )
        register_webhooks(registry, webhook)
        around = [
            asyncio.create_task(
                serve_health(
                    address=settings.listen_address,
                    port=settings.health_port,
                    tls=health_tls,
                    readiness=readiness,
                    metrics=metrics,
                    breakers=resolver.breakers,
                ),
                name="image-gate health server",
            ),
        ]
        if health_tls is not webhook_tls:
            around.append(asyncio.create_task(webhook_tls.follow(), name="image-gate webhook certificate"))
        try:
            # kopf.operator() is these two calls; between them, SIGTERM becomes a drain.
            existing = asyncio.all_tasks()
            tasks = await kopf.spawn_tasks(
                registry=registry,
                settings=kopf_settings(server),
                memories=WatchedOnlyMemories(),
                clusterwide=True,
                standalone=True,
                stop_flag=stopping.stop,
            )
            stopping.install()
            await kopf.run_tasks(tasks, ignored=existing)
        finally:
            for task in around:
                task.cancel()
            await asyncio.gather(*around, return_exceptions=True)
            await namespaces_api.aclose()
            watches.uninstall()
