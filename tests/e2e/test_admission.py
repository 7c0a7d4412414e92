"""image-gate end to end: the CRD and policy status, AdmissionReviews over HTTPS, and kubectl.

One control plane, one cloudsim and one image-gate process serve the whole session (see
``tests/e2e/imagegate.py``); each test has its own namespace and policies scoped to it. Messages
and warnings are asserted word for word: they are what users read.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.imagegate import (
    ACR_DIGEST,
    ACR_IMAGE,
    ACR_OTHER_DIGEST,
    CENTOS_IMAGE,
    CRD_NAME,
    E2E_LABEL,
    IMAGE_GATE_NAMESPACE,
    UBUNTU_IMAGE,
    ImageGate,
    Kube,
    PolicyFactory,
    admission_review,
    cronjob_manifest,
    deployment_manifest,
    pod_manifest,
    ready_condition,
    scoped_policy,
    wait_for,
)

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def example_policy(example: str, namespace: str, **spec_changes: Any) -> dict[str, Any]:
    """A policy from examples/policies/, renamed ``<example>-<namespace>`` and scoped to ``namespace``."""
    document = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    spec = copy.deepcopy(document["spec"])
    spec.update(spec_changes)
    return scoped_policy(f"{example}-{namespace}", namespace, spec)


def assert_kubectl_denied(stderr: str, *, webhook: str, message: str, from_file: bool = False) -> None:
    """kubectl's whole stderr for a denial by ``<webhook>.imagegate.io``, with ``message`` word for word."""
    where = 'error when creating "STDIN": ' if from_file else ""
    tail = f'{where}admission webhook "{webhook}.imagegate.io" denied the request: {message}\n'
    assert stderr == f"Error from server (Forbidden): {tail}", stderr


def centos_denial(kind: str, obj: str, container: str, policy: str) -> str:
    """What approved-base-os says about a CentOS container, word for word."""
    return (
        f"image-gate denied {kind} {obj}: 2 violations\n"
        f'- container "{container}" (image {CENTOS_IMAGE}): policy "{policy}" rule baseImage.allowedOS: '
        "found CentOS Linux 7.9.2009, expected one of Debian >=11, Ubuntu 22.04 or 24.04\n"
        f'- container "{container}" (image {CENTOS_IMAGE}): policy "{policy}" rule baseImage.deniedOS: '
        "found CentOS Linux 7.9.2009, expected not CentOS"
    )


# ----------------------------------------------------------------------------------- CRD and status


def test_crd_is_established_with_short_name_and_columns(kube: Kube, crd: dict[str, Any]) -> None:
    live = kube.get("crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert live["status"]["acceptedNames"]["shortNames"] == ["igp"]
    columns = [c["name"] for c in live["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Mode", "Ready", "Reason", "Violations", "Age"]  # Violations: the audit's status.audit


def test_valid_policy_becomes_ready_and_follows_generations(
    kube: Kube, image_gate: ImageGate, policies: PolicyFactory, namespace: str
) -> None:
    manifest = example_policy("approved-base-os", namespace)
    name = manifest["metadata"]["name"]
    live = policies.apply(manifest)
    assert live["metadata"]["generation"] == 1
    assert live["spec"]["onUnresolved"] == "Deny"
    condition = ready_condition(live)
    assert condition is not None
    assert condition.pop("lastTransitionTime")
    assert condition == {
        "type": "Ready",
        "status": "True",
        "reason": "Compiled",
        "message": "the policy is compiled and enforced in Enforce mode",
        "observedGeneration": 1,
    }
    assert live["status"]["observedGeneration"] == 1

    live = policies.apply(example_policy("approved-base-os", namespace, mode="Warn"))
    assert live["metadata"]["generation"] == 2
    assert live["status"]["observedGeneration"] == 2
    condition = ready_condition(live)
    assert condition is not None
    assert condition["message"] == "the policy is compiled and enforced in Warn mode"
    assert condition["observedGeneration"] == 2

    table = kube.kubectl("get", "igp", name).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODE", "READY", "VIOLATIONS", "AGE"]
    assert table[1].split()[:3] == [name, "Warn", "True"]
    wide = kube.kubectl("get", "igp", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "MODE", "READY", "REASON", "VIOLATIONS", "AGE"]
    assert wide[1].split()[:4] == [name, "Warn", "True", "Compiled"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param(
            {"mode": "Enforce"},
            "spec: Invalid value: a policy needs baseImage or digest rules (or both)",
            id="no-rules",
        ),
        pytest.param(
            {"baseImage": {}},
            "spec.baseImage: Invalid value: give allowedOS, deniedOS or allowedLayerDigests",
            id="empty-baseImage",
        ),
        pytest.param(
            {"digest": {"requirePinned": False}},
            "spec.digest: Invalid value: set requirePinned, matchRegistry or allowed",
            id="digest-checks-nothing",
        ),
        pytest.param(
            {
                "match": {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}},
                "digest": {"requirePinned": True},
            },
            "spec.match.namespaceSelector.matchExpressions[0]: Invalid value: "
            "In and NotIn need values; Exists and DoesNotExist take none",
            id="In-without-values",
        ),
        pytest.param(
            {"mode": "Block", "digest": {"requirePinned": True}},
            'spec.mode: Unsupported value: "Block": supported values: "Enforce", "Warn", "Audit"',
            id="unknown-mode",
        ),
    ],
)
def test_schema_refuses_malformed_policy(
    kube: Kube, crd: dict[str, Any], policies: PolicyFactory, spec: dict[str, Any], error: str
) -> None:
    manifest = {"apiVersion": "imagegate.io/v1alpha1", "kind": "ImageGatePolicy", "metadata": {"name": "malformed"}}
    manifest["spec"] = spec
    policies.names.append("malformed")  # deleted afterwards, should the API server ever accept it
    result = kube.apply(manifest, check=False)
    assert result.returncode == 1, result.stdout
    prefix = 'The ImageGatePolicy "malformed" is invalid: '
    assert result.stderr.startswith(prefix), result.stderr
    # One error: on the same line. Several (the schema's and "rules not checked"): a bulleted list.
    errors = result.stderr.removeprefix(prefix).splitlines()
    assert errors == [error] or f"* {error}" in errors, result.stderr
    assert kube.get_or_none("igp", "malformed") is None


def test_policy_the_schema_accepts_but_image_gate_cannot_compile_is_not_ready(
    kube: Kube, image_gate: ImageGate, policies: PolicyFactory, namespace: str
) -> None:
    broken = scoped_policy(
        f"broken-{namespace}",
        namespace,
        {"baseImage": {"allowedOS": [{"name": "Debian", "versions": [">=eleven"]}]}},
    )
    live = policies.apply(broken)
    condition = ready_condition(live)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "Invalid")
    assert condition["message"] == (
        "the policy is ignored until fixed: "
        "spec.baseImage.allowedOS[0].versions[0]: '>=eleven': >= needs a numeric version, not 'eleven'"
    )
    assert condition["observedGeneration"] == live["metadata"]["generation"]
    wide = kube.kubectl("get", "igp", broken["metadata"]["name"], "-o", "wide").stdout.splitlines()
    assert wide[1].split()[:4] == [broken["metadata"]["name"], "Enforce", "False", "Invalid"]

    # A broken policy takes no part in admission: with only it covering the namespace, a CentOS pod
    # is admitted.
    response = image_gate.review("pods", admission_review(pod_manifest("legacy", namespace, CENTOS_IMAGE)))
    assert response["allowed"] is True, response


# ------------------------------------------------------------------------ AdmissionReviews over HTTPS


def test_review_pod(image_gate: ImageGate, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]

    denied = image_gate.review("pods", admission_review(pod_manifest("legacy", namespace, CENTOS_IMAGE)))
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 403
    assert denied["status"]["message"] == centos_denial("Pod", f"{namespace}/legacy", "legacy", policy)
    assert not denied.get("warnings")

    allowed = image_gate.review("pods", admission_review(pod_manifest("api", namespace, UBUNTU_IMAGE)))
    assert allowed["allowed"] is True
    assert not allowed.get("warnings")
    assert "message" not in (allowed.get("status") or {})

    # Init containers are judged like the others; violations are listed per container.
    both = image_gate.review(
        "pods", admission_review(pod_manifest("mixed", namespace, UBUNTU_IMAGE, init_image=CENTOS_IMAGE))
    )
    assert both["allowed"] is False
    assert both["status"]["message"] == centos_denial("Pod", f"{namespace}/mixed", "init", policy)


def test_review_deployment_and_cronjob(image_gate: ImageGate, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]

    deployment = image_gate.review(
        "deployments", admission_review(deployment_manifest("batch", namespace, CENTOS_IMAGE))
    )
    assert deployment["allowed"] is False
    assert deployment["status"]["code"] == 403
    assert deployment["status"]["message"] == centos_denial("Deployment", f"{namespace}/batch", "batch", policy)

    cronjob = image_gate.review("cronjobs", admission_review(cronjob_manifest("nightly", namespace, CENTOS_IMAGE)))
    assert cronjob["allowed"] is False
    assert cronjob["status"]["code"] == 403
    assert cronjob["status"]["message"] == centos_denial("CronJob", f"{namespace}/nightly", "nightly", policy)

    fine = image_gate.review("cronjobs", admission_review(cronjob_manifest("nightly", namespace, UBUNTU_IMAGE)))
    assert fine["allowed"] is True


def test_review_dry_run_is_judged_but_posts_no_event(
    kube: Kube, image_gate: ImageGate, policies: PolicyFactory, namespace: str
) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]
    labels = {"kind": "Pod", "decision": "denied", "dry_run": "true"}
    before = image_gate.metric_value("image_gate_admission_requests_total", labels)

    dry = image_gate.review("pods", admission_review(pod_manifest("dry", namespace, CENTOS_IMAGE), dry_run=True))
    assert dry["allowed"] is False
    assert dry["status"]["code"] == 403
    assert dry["status"]["message"] == centos_denial("Pod", f"{namespace}/dry", "dry", policy)
    assert image_gate.metric_value("image_gate_admission_requests_total", labels) == before + 1

    # A real denial after it: image-gate posts Events in order, so once this one is there, an Event
    # for the dry run would be there too.
    image_gate.review("pods", admission_review(pod_manifest("wet", namespace, CENTOS_IMAGE)))
    events = wait_for(
        lambda: kube.events(namespace, reason="ImageGateDenied") or None, what="the ImageGateDenied event"
    )
    assert [e["involvedObject"].get("name") for e in events] == ["wet"]


def test_review_ephemeral_container_update(image_gate: ImageGate, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]
    running = pod_manifest("app", namespace, UBUNTU_IMAGE)
    running["metadata"]["uid"] = "7d6c1c4e-2a8e-4c3f-9c1e-1f0e5a9b8c7d"

    def with_debugger(image: str) -> dict[str, Any]:
        pod = copy.deepcopy(running)
        pod["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": image, "targetContainerName": "app"}]
        return pod

    review = admission_review(
        with_debugger(CENTOS_IMAGE), operation="UPDATE", old=running, sub_resource="ephemeralcontainers"
    )
    denied = image_gate.review("pods", review)
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 403
    # Only the new (ephemeral) container is judged on UPDATE.
    assert denied["status"]["message"] == centos_denial("Pod", f"{namespace}/app", "debugger", policy)

    review = admission_review(
        with_debugger(UBUNTU_IMAGE), operation="UPDATE", old=running, sub_resource="ephemeralcontainers"
    )
    assert image_gate.review("pods", review)["allowed"] is True


def test_review_warn_mode_admits_with_warnings(image_gate: ImageGate, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("warn-unpinned", namespace))["metadata"]["name"]
    response = image_gate.review("pods", admission_review(pod_manifest("api", namespace, UBUNTU_IMAGE)))
    assert response["allowed"] is True
    assert response["warnings"] == [
        f'image-gate (policy "{policy}" in Warn mode): container "api" (image {UBUNTU_IMAGE}): '
        f'policy "{policy}" rule digest.requirePinned: found tag 1.4.2, expected a reference by digest (@sha256:...)'
    ]


def test_review_in_exempt_namespaces_is_always_allowed(
    image_gate: ImageGate, policies: PolicyFactory, namespace: str
) -> None:
    covered = [namespace, "kube-system", IMAGE_GATE_NAMESPACE]
    manifest = example_policy("approved-base-os", namespace)
    manifest["spec"]["match"]["namespaceSelector"] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": covered}]
    }
    policies.apply(manifest)
    control = image_gate.review("pods", admission_review(pod_manifest("legacy", namespace, CENTOS_IMAGE)))
    assert control["allowed"] is False, "the policy covers the test namespace"
    for exempt in ("kube-system", IMAGE_GATE_NAMESPACE):
        response = image_gate.review("pods", admission_review(pod_manifest("legacy", exempt, CENTOS_IMAGE)))
        assert response["allowed"] is True, exempt
        assert not response.get("warnings"), exempt


# ------------------------------------------------------------------------------------- with kubectl


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_admits_compliant_and_refuses_noncompliant_pod(
    kube: Kube, policies: PolicyFactory, namespace: str
) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]

    created = kube.kubectl("run", "api", f"--image={UBUNTU_IMAGE}", "--namespace", namespace)
    assert created.stdout == "pod/api created\n"
    assert created.stderr == ""

    refused = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", namespace, check=False)
    assert refused.returncode == 1
    assert refused.stdout == ""
    message = centos_denial("Pod", f"{namespace}/legacy", "legacy", policy)
    assert_kubectl_denied(refused.stderr, webhook="pods", message=message)
    assert kube.get_or_none("pod", "legacy", "--namespace", namespace) is None


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_reports_denials_as_forbidden(kube: Kube, policies: PolicyFactory, namespace: str) -> None:
    policies.apply(example_policy("approved-base-os", namespace))
    refused = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", namespace, check=False)
    assert refused.stderr.startswith('Error from server (Forbidden): admission webhook "pods.imagegate.io" denied')


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_denial_posts_a_warning_event(kube: Kube, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]
    refused = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", namespace, check=False)
    assert refused.returncode == 1

    events = wait_for(
        lambda: kube.events(namespace, reason="ImageGateDenied") or None, what="the ImageGateDenied event"
    )
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "Warning"
    assert event["message"] == centos_denial("Pod", f"{namespace}/legacy", "legacy", policy)
    involved = event["involvedObject"]
    assert (involved["kind"], involved["namespace"], involved["name"]) == ("Pod", namespace, "legacy")
    # The API server assigns the uid before validating admission, so the Event names a uid that no
    # object ever had: `kubectl get events` lists it under pod/legacy, `kubectl describe` has no pod.
    assert involved["uid"]
    assert kube.get_or_none("pod", "legacy", "--namespace", namespace) is None

    table = kube.kubectl("get", "events", "--namespace", namespace, "--field-selector", "reason=ImageGateDenied")
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:5] == ["Warning", "ImageGateDenied", "pod/legacy", "image-gate"]


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_shows_warn_mode_warning(kube: Kube, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("warn-unpinned", namespace))["metadata"]["name"]
    created = kube.kubectl("run", "api", f"--image={UBUNTU_IMAGE}", "--namespace", namespace)
    assert created.stdout == "pod/api created\n"
    assert created.stderr == (
        f'Warning: image-gate (policy "{policy}" in Warn mode): container "api" (image {UBUNTU_IMAGE}): '
        f'policy "{policy}" rule digest.requirePinned: found tag 1.4.2, expected a reference by digest (@sha256:...)\n'
    )


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_server_side_dry_run(kube: Kube, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]

    refused = kube.apply(pod_manifest("legacy", namespace, CENTOS_IMAGE), "--dry-run=server", check=False)
    assert refused.returncode == 1
    message = centos_denial("Pod", f"{namespace}/legacy", "legacy", policy)
    assert_kubectl_denied(refused.stderr, webhook="pods", message=message, from_file=True)

    admitted = kube.apply(pod_manifest("api", namespace, UBUNTU_IMAGE), "--dry-run=server")
    assert admitted.stdout == "pod/api created (server dry run)\n"
    assert kube.get_or_none("pod", "api", "--namespace", namespace) is None, "a dry run creates nothing"
    assert kube.events(namespace, reason="ImageGateDenied") == [], "a dry run posts no Event"


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_refuses_deployment_with_noncompliant_template(
    kube: Kube, policies: PolicyFactory, namespace: str
) -> None:
    policy = policies.apply(example_policy("approved-base-os", namespace))["metadata"]["name"]
    refused = kube.apply(deployment_manifest("batch", namespace, CENTOS_IMAGE), check=False)
    assert refused.returncode == 1
    message = centos_denial("Deployment", f"{namespace}/batch", "batch", policy)
    assert_kubectl_denied(refused.stderr, webhook="deployments", message=message, from_file=True)
    assert kube.get_or_none("deployment", "batch", "--namespace", namespace) is None


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_pinned_acr_digest_must_match_the_registry(kube: Kube, policies: PolicyFactory, namespace: str) -> None:
    policy = policies.apply(example_policy("pinned-acr", namespace))["metadata"]["name"]
    current = f"{ACR_IMAGE}@{ACR_DIGEST}"
    created = kube.kubectl("run", "web", f"--image={current}", "--namespace", namespace)
    assert created.stdout == "pod/web created\n"

    stale = f"{ACR_IMAGE}@{ACR_OTHER_DIGEST}"
    refused = kube.kubectl("run", "stale", f"--image={stale}", "--namespace", namespace, check=False)
    assert refused.returncode == 1
    message = (
        f"image-gate denied Pod {namespace}/stale: 1 violation\n"
        f'- container "stale" (image {stale}): policy "{policy}" rule digest.matchRegistry: '
        f"found pinned {ACR_OTHER_DIGEST}, expected {ACR_DIGEST}, the registry's digest for tag 2.0"
    )
    assert_kubectl_denied(refused.stderr, webhook="pods", message=message)


@pytest.mark.usefixtures("webhook_configuration")
def test_tightened_policy_refuses_new_pods_of_existing_deployment(
    kube: Kube, policies: PolicyFactory, namespace: str
) -> None:
    policies.apply(example_policy("approved-base-os", namespace))
    kube.apply(deployment_manifest("api", namespace, UBUNTU_IMAGE, replicas=1))

    def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kube.get("pods", "--namespace", namespace, "--selector", "app=api")["items"]
        return items

    wait_for(lambda: len(pods()) == 1, what="the Deployment's first pod")

    # Tighten: only Debian from now on. The Deployment's pods are Ubuntu.
    tight = example_policy("approved-base-os", namespace)
    tight["spec"]["baseImage"]["allowedOS"] = [{"name": "Debian", "versions": [">=11"]}]
    policy = policies.apply(tight)["metadata"]["name"]

    kube.kubectl("scale", "deployment", "api", "--replicas=2", "--namespace", namespace)

    def failed_create() -> dict[str, Any] | None:
        for event in kube.events(namespace, reason="FailedCreate"):
            if event["involvedObject"]["kind"] == "ReplicaSet":
                return event
        return None

    event = wait_for(failed_create, what="the ReplicaSet's FailedCreate event")
    prefix = (
        f'Error creating: admission webhook "pods.imagegate.io" denied the request: image-gate denied Pod {namespace}/'
    )
    assert event["message"].startswith(prefix), event["message"]
    pod_name, _, rest = event["message"].removeprefix(prefix).partition(": ")
    assert pod_name.startswith("api-"), pod_name
    assert rest == (
        "1 violation\n"
        f'- container "api" (image {UBUNTU_IMAGE}): policy "{policy}" rule baseImage.allowedOS: '
        "found Ubuntu 22.04, expected Debian >=11"
    )
    assert len(pods()) == 1

    # Relax again: the ReplicaSet controller's retries now succeed.
    policies.apply(example_policy("approved-base-os", namespace))
    wait_for(lambda: len(pods()) == 2, what="the second pod after relaxing the policy", timeout=60)


@pytest.mark.usefixtures("webhook_configuration")
def test_kubectl_never_blocks_kube_system_or_image_gates_namespace(
    kube: Kube, policies: PolicyFactory, namespace: str, e2e_token: str
) -> None:
    exempt = ["kube-system", IMAGE_GATE_NAMESPACE]
    manifest = example_policy("approved-base-os", namespace)
    manifest["spec"]["match"]["namespaceSelector"] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace, *exempt]}]
    }
    policies.apply(manifest)
    refused = kube.kubectl("run", "legacy", f"--image={CENTOS_IMAGE}", "--namespace", namespace, check=False)
    assert refused.returncode == 1, "the policy covers the test namespace"

    pod = f"legacy-{namespace}"
    for name in exempt:
        # Even labelled like the test namespaces, these are excluded by the webhook configuration
        # (and image-gate would exempt them itself, see test_review_in_exempt_namespaces_is_always_allowed).
        kube.kubectl("label", "namespace", name, f"{E2E_LABEL}={e2e_token}", "--overwrite")
        try:
            kube.control_plane.wait_for_service_account(name)
            created = kube.kubectl("run", pod, f"--image={CENTOS_IMAGE}", "--namespace", name)
            assert created.stdout == f"pod/{pod} created\n"
        finally:
            kube.kubectl("delete", "pod", pod, "--namespace", name, "--ignore-not-found", "--wait=false", check=False)
            kube.kubectl("label", "namespace", name, f"{E2E_LABEL}-", check=False)
