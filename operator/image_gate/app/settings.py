"""
Configuration of ``image-gate run``, from flags and environment, checked at start-up.

`Settings` is the one table of settings: each field declared with `setting`
is a flag (``--tag-ttl-seconds``) and an ``IMAGE_GATE_*`` variable (the Helm
chart sets those) whose ``--help`` shows the variable and the default; a flag
given on the command line wins. Adding a setting is one field here, plus its
chart value (tests/unit/test_chart.py holds the chart to this table).

A bad value stops start-up with a message naming the flag and the variable,
never a stack trace at the first admission.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from image_gate.app.options import (
    Option,
    add_options,
    choice,
    existing_path,
    names,
    options_of,
    port_number,
    rate,
    seconds,
    setting,
    setting_from,
    text,
    url,
)
from image_gate.clouds import aliyun, huawei
from image_gate.clouds.quota import Rate
from image_gate.facts.registries import ConfigError, RegistryMapping
from image_gate.facts.resolver import CacheSettings
from image_gate.kube.server import DEFAULT_MAX_REVIEW_BYTES

__all__ = ["DEFAULT_EXEMPT_NAMESPACES", "Settings", "SettingsError", "add_run_arguments", "run_options"]

DEFAULT_EXEMPT_NAMESPACES = ("kube-system",)
LogFormat = Literal["json", "text"]
FactStoreMode = Literal["auto", "cluster", "memory"]
ReportFlavour = Literal["auto", "wgpolicy", "openreports"]
_CACHE = CacheSettings()
"""The fact cache's own defaults: the TTLs have their one home there."""


class SettingsError(ValueError):
    """Raised when a setting is invalid; the message names the flag and its variable."""


def _exempt(value: str) -> frozenset[str]:
    return names(value) or frozenset(DEFAULT_EXEMPT_NAMESPACES)


def _registries(value: str) -> RegistryMapping:
    return RegistryMapping.load(value)


def _byte_count(value: str) -> int:
    if not value.isdigit() or int(value) < 64 * 1024:
        raise ValueError(f"must be a number of bytes, at least 65536, not {value!r}")
    return int(value)


def _fact_store(value: str) -> FactStoreMode:
    mode = choice("auto", "cluster", "memory")(value)
    return "cluster" if mode == "cluster" else "memory" if mode == "memory" else "auto"


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"must be a whole number of at least 1, not {value!r}")
    return int(value)


def _log_format(value: str) -> LogFormat:
    return "json" if choice("json", "text")(value) == "json" else "text"


def _switch(value: str) -> bool:
    return choice("true", "false")(value) == "true"


def _report_flavour(value: str) -> ReportFlavour:
    flavour = choice("auto", "wgpolicy", "openreports")(value)
    return "wgpolicy" if flavour == "wgpolicy" else "openreports" if flavour == "openreports" else "auto"


@dataclass(frozen=True, slots=True)
class Settings:
    listen_address: str = setting(
        "0.0.0.0",  # noqa: S104 -- a webhook in a pod listens on the pod IP
        "address the webhook and health servers listen on",
        parse=text,
    )
    port: int = setting(9443, "HTTPS port of the admission webhook", parse=port_number)
    health_port: int = setting(8443, "HTTPS port of /healthz, /readyz and /metrics", parse=port_number)
    webhook_host: str = setting("127.0.0.1", "host name or IP for a generated development certificate", parse=text)
    """Name or IP put in a generated certificate (development only)."""
    cert_file: Path | None = setting(
        None, "serving certificate (PEM); re-read when it changes; generated when absent", parse=Path
    )
    key_file: Path | None = setting(None, "private key of the serving certificate (PEM)", parse=Path)
    client_ca_file: Path | None = setting(
        None,
        "CA of the clients allowed to call the webhook (mutual TLS): a client without a certificate it signed"
        " is refused at the TLS handshake; re-read when it changes",
        parse=existing_path,
    )
    """The API server presents its client certificate through its AdmissionConfiguration kubeconfig."""
    max_review_bytes: int = setting(
        DEFAULT_MAX_REVIEW_BYTES,
        "largest AdmissionReview accepted, in bytes; larger ones get a 413 (the API server sends up to ~3 MiB)",
        parse=_byte_count,
    )
    drain_seconds: float = setting(
        5.0,
        "after SIGTERM: seconds to keep judging reviews while /readyz says not ready, before the listener closes",
        parse=seconds(maximum=300.0),
    )
    """Covers the time the Service's endpoints take to drop this replica; the chart's preStop waits too."""
    cert_dir: Path = setting(
        Path("/tmp/image-gate-certs"),  # noqa: S108 -- the chart mounts an emptyDir at /tmp
        "where a generated development certificate is written",
        parse=Path,
    )
    registries: RegistryMapping = setting_from(
        RegistryMapping.default,
        "registry mapping YAML: which registries are looked up in which cloud",
        name="config",
        parse=_registries,
        default_text="built in: SWR hosts in HSS, public ACR hosts in Security Center, China site",
    )
    namespace: str | None = setting(
        None, "image-gate's own namespace, never judged (the chart sets it from the pod)", parse=text
    )
    """image-gate's own namespace: never judged, so image-gate can always be repaired."""
    exempt_namespaces: frozenset[str] = setting(
        frozenset(DEFAULT_EXEMPT_NAMESPACES), "comma-separated namespaces never judged", parse=_exempt
    )
    deadline: float = setting(
        3.0,
        "time budget of one admission review, below the webhook timeout",
        name="deadline_seconds",
        parse=seconds(maximum=29.0),
    )
    log_format: LogFormat = setting("json", "json or text", parse=_log_format)
    log_level: str = setting(
        "INFO",
        "debug, info, warning or error",
        parse=choice("debug", "info", "warning", "error", upper=True),
        default_text="info",
    )
    debug_http_logs: bool = setting(
        False,
        "true: also kopf's and aiohttp's line for every request, besides image-gate's own review line (debugging)",
        parse=_switch,
        default_text="false",
    )
    """Off: one log line per review; at 1,000 reviews/s three lines each would be 3,000 a second to ship."""
    hss_endpoint: str | None = setting(
        None, "override the Huawei Cloud HSS endpoint (all regions); default: the registry mapping's", parse=url
    )
    sas_endpoint: str | None = setting(
        None, "override the Alibaba Cloud Security Center endpoint; default: the registry mapping's", parse=url
    )
    cloud_ca_file: Path | None = setting(
        None, "CA bundle to verify the clouds' TLS with, instead of the system's", parse=existing_path
    )
    """CA bundle for the clouds' TLS (the demo's cloudsim); default: the system's."""
    hss_rate: Rate = setting(
        huawei.DEFAULT_RATE,
        "client-side quota per HSS API and credential, calls/seconds; the default is HSS's published quota",
        parse=rate,
    )
    """Calls per API per credential: HSS's published quota, unless yours was raised."""
    sas_rate: Rate = setting(
        aliyun.DEFAULT_RATE, "client-side quota per SAS API and account, calls/seconds", parse=rate
    )
    """SAS publishes no quota; single-digit calls per second per account is safe."""
    tag_ttl: float = setting(
        _CACHE.tag_ttl,
        "how long a tag's digest and HSS image id are trusted, seconds",
        name="tag_ttl_seconds",
        parse=seconds(),
    )
    negative_ttl: float = setting(
        _CACHE.negative_ttl,
        "how long 'not found' answers are cached, seconds",
        name="negative_ttl_seconds",
        parse=seconds(),
    )
    max_stale: float = setting(
        _CACHE.max_stale,
        "how long a fact may be served after its cloud started failing, seconds",
        name="max_stale_seconds",
        parse=seconds(),
    )
    fact_store: FactStoreMode = setting(
        "auto",
        "cluster: every replica shares facts as ImageFacts and one Lease holder calls the clouds; "
        "memory: each replica on its own; auto: cluster when --namespace is given (the chart gives it)",
        parse=_fact_store,
    )
    lease_duration: float = setting(
        15.0,
        "seconds the Lease holder may go without renewing before another replica takes over; "
        "renewed every 2/15 of it, given up after 2/3 of it",
        name="lease_duration_seconds",
        parse=seconds(maximum=300.0),
    )
    max_facts: int = setting(
        50_000, "ImageFacts kept at most; past it, new facts are resolved by each replica on its own", parse=_count
    )
    unused_fact_days: float = setting(
        30.0, "days after which an ImageFact no review used is deleted", name="unused_fact_days", parse=seconds()
    )
    hss_regions: frozenset[str] | None = setting(
        None,
        "comma-separated regions HSS is asked about; other SWR regions are 'not applicable' without a call",
        parse=names,
        default_text="the regions of Huawei Cloud's HSS SDK",
    )
    acr_regions: frozenset[str] | None = setting(
        None,
        "comma-separated regions Security Center is asked about; others are 'not applicable' without a call",
        parse=names,
        default_text="every region",
    )
    hss_inventory_mirror: bool = setting(
        True,
        "true: the leader mirrors HSS's image inventory (ListRegistryImages pages within a share of the quota), "
        "so HSS image ids are known before admission needs them; false: no pages, each lookup lists at need",
        parse=_switch,
        default_text="true",
    )
    """Off for an HSS account whose other users need the ListRegistryImages quota the pages take."""
    audit_interval: float = setting(
        600.0,
        "seconds between the leader's audit passes over what runs (a policy changed, or a fact a pass used, "
        "starts one sooner)",
        name="audit_interval_seconds",
        parse=seconds(),
    )
    audit_debounce: float = setting(
        5.0,
        "seconds from a policy or fact change to the audit pass it starts (changes meanwhile join that pass)",
        name="audit_debounce_seconds",
        parse=seconds(maximum=30.0),
    )
    policy_reports: bool = setting(
        True,
        "true: the audit writes a policy report per namespace; false: only the policies' status.audit",
        parse=_switch,
        default_text="true",
    )
    report_flavour: ReportFlavour = setting(
        "auto",
        "wgpolicy (wgpolicyk8s.io/v1alpha2 PolicyReport), openreports (openreports.io/v1alpha1 Report), "
        "or auto: openreports when its CRD is served, else wgpolicy",
        parse=_report_flavour,
    )

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        """Every option from its flag or variable (the flag wins), then the rules that tie options together."""
        env = os.environ if environ is None else environ
        given: dict[str, Any] = {}  # each parser returns its field's type
        for field_name, option in options_of(cls):
            raw = option.raw(args, env)
            if raw is not None:
                given[field_name] = _parse(option, raw)
        return cls(**given)._tied_together()

    def _tied_together(self) -> Settings:
        if (self.cert_file is None) != (self.key_file is None):
            raise SettingsError("--cert-file and --key-file (IMAGE_GATE_CERT_FILE, IMAGE_GATE_KEY_FILE) go together")
        if self.port == self.health_port:
            raise SettingsError("--port and --health-port must differ")
        if self.fact_store == "cluster" and not self.namespace:
            raise SettingsError(
                "--fact-store cluster (IMAGE_GATE_FACT_STORE) needs --namespace (IMAGE_GATE_NAMESPACE) for its Lease"
            )
        return dataclasses.replace(
            self,
            exempt_namespaces=(self.exempt_namespaces | {self.namespace}) if self.namespace else self.exempt_namespaces,
            hss_endpoint=self.hss_endpoint or self.registries.huawei_endpoint,
            sas_endpoint=self.sas_endpoint or self.registries.aliyun_endpoint,
        )


def _parse(option: Option, raw: str) -> object:
    try:
        return option.parse(raw)
    except (ValueError, ConfigError) as exc:
        raise SettingsError(f"{option.where}: {exc}") from None


def run_options() -> list[Option]:
    """Every setting of ``image-gate run``, in declaration order (for docs and the chart tests)."""
    return [option for _, option in options_of(Settings)]


def add_run_arguments(parser: argparse.ArgumentParser, *, only: tuple[str, ...] | None = None) -> None:
    """The flags of ``image-gate run`` (or of those named in ``only``, for ``check``)."""
    add_options(parser, Settings, only=only)
