"""The RRSA role the tests assume (cloudsim's STS knows it), and credentials that assume it from cloudsim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudsim.server import Simulators
from image_gate.clouds.aliyun import RrsaCredentials
from tests.tlsutil import TestPki

__all__ = ["PROVIDER_ARN", "ROLE_ARN", "rrsa_provider"]

ROLE_ARN = "acs:ram::1234567890123456:role/image-gate"
PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0ffee"


def rrsa_provider(sim: Simulators, pki: TestPki, token_file: Path, **options: Any) -> RrsaCredentials:
    """RRSA credentials from cloudsim's STS, with the tests' role."""
    return RrsaCredentials(
        role_arn=ROLE_ARN,
        oidc_provider_arn=PROVIDER_ARN,
        token_file=token_file,
        sts_endpoint=sim.sas_url,
        verify=pki.ca_file,
        **options,
    )
