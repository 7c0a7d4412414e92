"""Who image-gate is in the cloud (IAM user, account, role ARN, Pod Identity URI) is for its log, not pod creators.

Each case configures image-gate the way an operator would (the environment), lets cloudsim refuse the
credentials, and judges a pod through `Admission` with the real clients: the denial and the warnings a
pod creator reads say only that the cloud refused image-gate's credentials (and the request id to
quote); the findings the review's log line carries (`Finding.as_dict`) keep every detail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudsim.faults import Fault
from cloudsim.hss_auth import DEFAULT_IAM_USERS
from cloudsim.server import Simulators
from image_gate.app.settings import Settings
from image_gate.app.wiring import fact_resolver
from image_gate.clouds.quota import Rate
from image_gate.core.admission import Admission, Review
from image_gate.core.evaluate import Subject
from image_gate.core.findings import Unresolved
from image_gate.core.outcomes import Unauthorized
from image_gate.core.policy import CompiledPolicy, compile_policy
from image_gate.core.workloads import Container
from tests.cloudenv import huawei_sdk_environ
from tests.tlsutil import TestPki

SWR_IMAGE = "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
ACR_IMAGE = "demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0"
BASE_OS = compile_policy("base-os", {"baseImage": {"allowedOS": [{"name": "Ubuntu", "versions": [">=22.04"]}]}})
REGISTRY_DIGEST = compile_policy("registry-digest", {"digest": {"matchRegistry": True}})
ROLE_ARN = "acs:ram::1234567890123456:role/image-gate-reader"
PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0ffee"
IAM_USER = DEFAULT_IAM_USERS[0]


@dataclass(frozen=True)
class Case:
    image: str
    policy: CompiledPolicy
    environ: Mapping[str, str]
    identity: tuple[str, ...]
    """What names image-gate's identity: in the log, never in what the pod creator reads."""


def case(name: str, sim: Simulators, tmp_path: Path) -> Case:
    token_file = tmp_path / "token"
    token_file.write_text("invalid-token-from-another-cluster", encoding="utf-8")
    if name == "iam-password":
        environ = {
            "HUAWEICLOUD_IAM_USERNAME": IAM_USER.name,
            "HUAWEICLOUD_IAM_PASSWORD": "not-the-password",
            "HUAWEICLOUD_IAM_DOMAIN": IAM_USER.domain,
            "HUAWEICLOUD_SDK_IAM_ENDPOINT": sim.hss_url,
        }
        return Case(SWR_IMAGE, BASE_OS, environ, (IAM_USER.name, IAM_USER.domain, sim.hss_url))
    if name == "pod-identity":
        uri = f"{sim.hss_url}/pod-identity/credentials"
        environ = {
            "HC_CONTAINER_CREDENTIALS_FULL_URI": uri,
            "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
            "HUAWEICLOUD_SDK_PROJECT_ID": sim.state.catalogue.huawei_credentials[0].project_id,
        }
        return Case(SWR_IMAGE, BASE_OS, environ, (uri,))
    if name == "rrsa":
        environ = {
            "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
            "ALIBABA_CLOUD_STS_ENDPOINT": sim.sas_url,
        }
        return Case(f"{ACR_IMAGE}@sha256:{'0' * 64}", REGISTRY_DIGEST, environ, (ROLE_ARN, "1234567890123456"))
    raise AssertionError(name)


def pod(image: str) -> Subject:
    return Subject("Pod", "shop/web", "shop", {}, (Container("container", "app", image),))


async def review(
    sim: Simulators, pki: TestPki, environ: Mapping[str, str], image: str, policy: CompiledPolicy
) -> Review:
    settings = Settings(
        hss_endpoint=sim.hss_url, sas_endpoint=sim.sas_url, cloud_ca_file=pki.ca_file, hss_rate=Rate(100, 1.0)
    )
    async with fact_resolver(settings, environ=environ) as resolver:
        return await Admission(resolver, deadline=3.0).review(pod(image), [policy])


def the_log_line(result: Review) -> str:
    """What `image_gate.kube.webhook` logs of a review's findings."""
    return json.dumps([finding.as_dict() for finding in result.decision.findings])


def what_the_pod_creator_reads(result: Review) -> str:
    return "\n".join([result.deny_message or "", *result.warnings])


@pytest.mark.parametrize("name", ["iam-password", "pod-identity", "rrsa"])
async def test_a_refused_credential_names_no_identity_to_the_pod_creator(
    name: str, sim: Simulators, pki: TestPki, tmp_path: Path
) -> None:
    sim.state.faults.reset()
    refused = case(name, sim, tmp_path)
    result = await review(sim, pki, refused.environ, refused.image, refused.policy)

    [finding] = result.decision.denials
    assert isinstance(finding.found, Unresolved)
    assert isinstance(finding.found.outcome, Unauthorized), finding.found.outcome
    shown = what_the_pod_creator_reads(result)
    assert "unauthorized" in shown
    assert "see image-gate's log" in shown
    logged = the_log_line(result)
    for name_of_identity in refused.identity:
        assert name_of_identity not in shown, f"{name_of_identity!r} shown to the pod creator:\n{shown}"
        assert name_of_identity in logged, f"{name_of_identity!r} missing from the log line:\n{logged}"


async def test_an_auth_fault_of_hss_gives_the_request_id_to_quote(sim: Simulators, pki: TestPki) -> None:
    environ = huawei_sdk_environ(sim.state.catalogue)
    sim.state.faults.reset()
    sim.state.faults.add(Fault(api="ListRegistryImages", kind="auth", times=1))
    try:
        result = await review(sim, pki, environ, SWR_IMAGE, BASE_OS)
    finally:
        sim.state.faults.reset()
    [finding] = result.decision.denials
    assert isinstance(finding.found, Unresolved)
    outcome = finding.found.outcome
    assert isinstance(outcome, Unauthorized)
    assert outcome.request_id
    assert (
        f"huawei ListRegistryImages: unauthorized: the cloud refused image-gate's credentials "
        f"(request id {outcome.request_id}; see image-gate's log) (code APIGW.0301)"
    ) in (result.deny_message or "")
    assert "verify aksk signature fail" in the_log_line(result)
