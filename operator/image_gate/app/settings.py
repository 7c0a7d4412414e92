"""
Configuration of ``image-gate run``, from flags and environment, checked at start-up.

Every flag has an ``IMAGE_GATE_*`` environment variable (the Helm chart sets
those); a flag given on the command line wins. A bad value stops start-up
with a message naming the flag and the variable, never a stack trace at the
first admission.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from image_gate.clouds.quota import Rate
from image_gate.facts.registries import ConfigError, RegistryMapping

__all__ = ["DEFAULT_EXEMPT_NAMESPACES", "Settings", "SettingsError", "add_run_arguments"]

DEFAULT_EXEMPT_NAMESPACES = ("kube-system",)
LogFormat = Literal["json", "text"]
HSS_PUBLISHED_QUOTA = Rate(5, 60.0)
SAS_SAFE_RATE = Rate(5, 1.0)


class SettingsError(ValueError):
    """Raised when a setting is invalid; the message names the flag and its variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    listen_address: str = "0.0.0.0"  # noqa: S104 -- a webhook in a pod listens on the pod IP
    port: int = 9443
    health_port: int = 8443
    webhook_host: str = "127.0.0.1"
    """Name or IP put in a generated certificate (development only)."""
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_dir: Path = Path("/tmp/image-gate-certs")  # noqa: S108 -- the chart mounts an emptyDir at /tmp
    registries: RegistryMapping = field(default_factory=RegistryMapping.default)
    namespace: str | None = None
    """image-gate's own namespace: never judged, so image-gate can always be repaired."""
    exempt_namespaces: frozenset[str] = frozenset(DEFAULT_EXEMPT_NAMESPACES)
    deadline: float = 3.0
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    hss_endpoint: str | None = None
    sas_endpoint: str | None = None
    cloud_ca_file: Path | None = None
    """CA bundle for the clouds' TLS (the demo's cloudsim); default: the system's."""
    hss_rate: Rate = HSS_PUBLISHED_QUOTA
    """Calls per API per credential: HSS's published quota, unless yours was raised."""
    sas_rate: Rate = SAS_SAFE_RATE
    """SAS publishes no quota; single-digit calls per second per account is safe."""
    tag_ttl: float = 300.0
    negative_ttl: float = 30.0
    max_stale: float = 3600.0

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(args, env)
        defaults = cls()
        namespace = read.text("namespace")
        exempt = set(read.list("exempt_namespaces") or DEFAULT_EXEMPT_NAMESPACES)
        if namespace:
            exempt.add(namespace)
        cert_file, key_file = read.path("cert_file"), read.path("key_file")
        if (cert_file is None) != (key_file is None):
            raise SettingsError("--cert-file and --key-file (IMAGE_GATE_CERT_FILE, IMAGE_GATE_KEY_FILE) go together")
        config = read.path("config")
        try:
            registries = RegistryMapping.load(config) if config else RegistryMapping.default()
        except ConfigError as exc:
            raise SettingsError(f"--config (IMAGE_GATE_CONFIG): {exc}") from None
        log_format = read.choice("log_format", ("json", "text")) or "json"
        settings = cls(
            listen_address=read.text("listen_address") or defaults.listen_address,
            port=read.port("port", defaults.port),
            health_port=read.port("health_port", defaults.health_port),
            webhook_host=read.text("webhook_host") or defaults.webhook_host,
            cert_file=cert_file,
            key_file=key_file,
            cert_dir=read.path("cert_dir") or defaults.cert_dir,
            registries=registries,
            namespace=namespace,
            exempt_namespaces=frozenset(exempt),
            deadline=read.seconds("deadline_seconds", defaults.deadline, maximum=29.0),
            log_format="json" if log_format == "json" else "text",
            log_level=(read.choice("log_level", ("debug", "info", "warning", "error")) or "info").upper(),
            hss_endpoint=read.url("hss_endpoint") or registries.huawei_endpoint,
            sas_endpoint=read.url("sas_endpoint") or registries.aliyun_endpoint,
            cloud_ca_file=read.path("cloud_ca_file", must_exist=True),
            hss_rate=read.rate("hss_rate", defaults.hss_rate),
            sas_rate=read.rate("sas_rate", defaults.sas_rate),
            tag_ttl=read.seconds("tag_ttl_seconds", defaults.tag_ttl),
            negative_ttl=read.seconds("negative_ttl_seconds", defaults.negative_ttl),
            max_stale=read.seconds("max_stale_seconds", defaults.max_stale),
        )
        if settings.port == settings.health_port:
            raise SettingsError("--port and --health-port must differ")
        return settings


# (flag destination, help) -- the flag is --dest-with-dashes, the variable IMAGE_GATE_DEST_UPPER.
_RUN_OPTIONS: tuple[tuple[str, str], ...] = (
    ("listen_address", "address the webhook and health servers listen on (default 0.0.0.0)"),
    ("port", "HTTPS port of the admission webhook (default 9443)"),
    ("health_port", "HTTPS port of /healthz, /readyz and /metrics (default 8443)"),
    ("webhook_host", "host name or IP for a generated development certificate (default 127.0.0.1)"),
    ("cert_file", "serving certificate (PEM); re-read when it changes; generated when absent"),
    ("key_file", "private key of the serving certificate (PEM)"),
    ("cert_dir", "where a generated development certificate is written (default /tmp/image-gate-certs)"),
    ("config", "registry mapping YAML: which registries are looked up in which cloud"),
    ("namespace", "image-gate's own namespace, never judged (the chart sets it from the pod)"),
    ("exempt_namespaces", "comma-separated namespaces never judged (default kube-system)"),
    ("deadline_seconds", "time budget of one admission review, below the webhook timeout (default 3)"),
    ("log_format", "json or text (default json)"),
    ("log_level", "debug, info, warning or error (default info)"),
    ("hss_endpoint", "override the Huawei Cloud HSS endpoint (all regions)"),
    ("sas_endpoint", "override the Alibaba Cloud Security Center endpoint"),
    ("cloud_ca_file", "CA bundle to verify the clouds' TLS with, instead of the system's"),
    ("hss_rate", "client-side quota per HSS API and credential, calls/seconds (default 5/60, HSS's own)"),
    ("sas_rate", "client-side quota per SAS API and account, calls/seconds (default 5/1)"),
    ("tag_ttl_seconds", "how long a tag's digest and HSS image id are trusted (default 300)"),
    ("negative_ttl_seconds", "how long 'not found' answers are cached (default 30)"),
    ("max_stale_seconds", "how long a fact may be served after its cloud started failing (default 3600)"),
)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    for dest, help_text in _RUN_OPTIONS:
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, default=None, help=f"{help_text} [env IMAGE_GATE_{dest.upper()}]")


@dataclass(frozen=True, slots=True)
class _Reader:
    args: argparse.Namespace
    env: Mapping[str, str]

    def raw(self, dest: str) -> str | None:
        value = getattr(self.args, dest, None)
        if value is None:
            value = self.env.get(f"IMAGE_GATE_{dest.upper()}")
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def where(self, dest: str) -> str:
        return f"--{dest.replace('_', '-')} (IMAGE_GATE_{dest.upper()})"

    def text(self, dest: str) -> str | None:
        return self.raw(dest)

    def list(self, dest: str) -> list[str]:
        value = self.raw(dest)
        return [item.strip() for item in value.split(",") if item.strip()] if value else []

    def path(self, dest: str, *, must_exist: bool = False) -> Path | None:
        value = self.raw(dest)
        if value is None:
            return None
        path = Path(value)
        if must_exist and not path.exists():
            raise SettingsError(f"{self.where(dest)}: {value} does not exist")
        return path

    def port(self, dest: str, default: int) -> int:
        value = self.raw(dest)
        if value is None:
            return default
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise SettingsError(f"{self.where(dest)}: must be a port number, not {value!r}")
        return int(value)

    def seconds(self, dest: str, default: float, *, maximum: float | None = None) -> float:
        value = self.raw(dest)
        if value is None:
            return default
        try:
            seconds = float(value)
        except ValueError:
            raise SettingsError(f"{self.where(dest)}: must be a number of seconds, not {value!r}") from None
        if seconds <= 0 or (maximum is not None and seconds > maximum):
            bound = f" and at most {maximum:g}" if maximum is not None else ""
            raise SettingsError(f"{self.where(dest)}: must be positive{bound}, not {value}")
        return seconds

    def rate(self, dest: str, default: Rate) -> Rate:
        value = self.raw(dest)
        if value is None:
            return default
        try:
            return Rate.parse(value)
        except ValueError as exc:
            raise SettingsError(f"{self.where(dest)}: {exc}") from None

    def choice(self, dest: str, choices: tuple[str, ...]) -> str | None:
        value = self.raw(dest)
        if value is not None and value.lower() not in choices:
            raise SettingsError(f"{self.where(dest)}: must be one of {', '.join(choices)}, not {value!r}")
        return value.lower() if value else None

    def url(self, dest: str) -> str | None:
        value = self.raw(dest)
        if value is not None and not value.startswith(("https://", "http://")):
            raise SettingsError(f"{self.where(dest)}: must be an http(s) URL, not {value!r}")
        return value.rstrip("/") if value else None
