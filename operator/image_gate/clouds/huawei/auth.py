"""
Choosing how to authenticate to Huawei Cloud from the environment.

In order, the first that is configured wins:

1. ``HUAWEICLOUD_SDK_AK`` / ``HUAWEICLOUD_SDK_SK`` (+ ``_SECURITY_TOKEN``, ``_PROJECT_ID``): AK/SK signing.
2. CCE Pod Identity (``HC_CONTAINER_CREDENTIALS_FULL_URI`` + ``HC_CONTAINER_AUTHORIZATION_TOKEN_FILE``):
   AK/SK signing with temporary credentials.
3. ``HUAWEICLOUD_IAM_USERNAME`` / ``_PASSWORD`` / ``_DOMAIN``: IAM token authentication.

A half-configured source (an AK without SK, ...) stops the search with a
`CredentialsError` naming what is missing, rather than silently using the next.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from image_gate.clouds._common import TlsVerify, WallClock
from image_gate.clouds.credentials import any_set
from image_gate.clouds.huawei.credentials import (
    ENV_AK,
    ENV_SK,
    POD_IDENTITY_TOKEN_FILE_ENV,
    POD_IDENTITY_URI_ENV,
    CredentialsError,
    default_credentials,
)
from image_gate.clouds.huawei.iam import (
    ENV_IAM_DOMAIN,
    ENV_IAM_ENDPOINT,
    ENV_IAM_PASSWORD,
    ENV_IAM_USERNAME,
    IamPassword,
    IamTokenAuth,
)
from image_gate.clouds.huawei.signer import HuaweiSigner

__all__ = ["HuaweiAuth", "configured", "configured_iam_endpoint", "default_auth"]

HuaweiAuth = HuaweiSigner | IamTokenAuth


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment sets any Huawei Cloud credentials, even half of them.

    Half a configuration counts: `default_auth` then says what is missing,
    rather than the cloud being silently switched off.
    """
    env = os.environ if environ is None else environ
    return any_set(env, (ENV_AK, ENV_SK, POD_IDENTITY_URI_ENV, ENV_IAM_USERNAME))


def configured_iam_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The SDK's IAM endpoint override (``HUAWEICLOUD_SDK_IAM_ENDPOINT``), None when unset."""
    env = os.environ if environ is None else environ
    return env.get(ENV_IAM_ENDPOINT, "").strip() or None


def default_auth(
    environ: Mapping[str, str] | None = None,
    *,
    iam_endpoint: str | None = None,
    verify: TlsVerify = True,
    clock: WallClock = time.time,
) -> HuaweiAuth:
    """The authentication the environment configures; `CredentialsError` when it configures none.

    ``verify`` applies to the credential services (Pod Identity, IAM);
    ``iam_endpoint`` overrides IAM's for token authentication.
    """
    provider = default_credentials(environ, verify=verify, clock=clock)
    if provider is not None:
        return HuaweiSigner(provider, clock=clock)
    password = IamPassword.from_env(environ)
    if password is not None:
        return IamTokenAuth(password, iam_endpoint=iam_endpoint, verify=verify, clock=clock)
    raise CredentialsError(
        f"no Huawei Cloud credentials: set {ENV_AK} and {ENV_SK}, run in a CCE pod with Pod Identity "
        f"({POD_IDENTITY_URI_ENV}, {POD_IDENTITY_TOKEN_FILE_ENV}), "
        f"or set {ENV_IAM_USERNAME}, {ENV_IAM_PASSWORD} and {ENV_IAM_DOMAIN}"
    )
