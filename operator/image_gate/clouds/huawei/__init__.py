"""
Huawei Cloud: HSS base-image lookups, ``SDK-HMAC-SHA256`` signing, IAM tokens, credential sources.

    if configured():                            # env AK/SK, CCE Pod Identity, or IAM password
        async with HssClient(default_auth()) as hss:
            found = await hss.find_image(image, location, deadline=deadline)
            if isinstance(found, Found):
                outcome = await hss.base_image(found.value, location, deadline=deadline)

See ``docs/huawei.md`` for credentials, permissions and endpoints.
"""

from image_gate.clouds.huawei.auth import HuaweiAuth, configured, configured_iam_endpoint, default_auth
from image_gate.clouds.huawei.client import (
    API_BASE_IMAGE,
    API_LIST_IMAGES,
    API_LIST_PROJECTS,
    CLOUD,
    DEFAULT_RATE,
    HssClient,
    RegistryImage,
    hss_endpoint,
    normalise_digest,
)
from image_gate.clouds.huawei.credentials import (
    CredentialsError,
    CredentialsUnavailable,
    HuaweiCredentials,
    HuaweiCredentialsProvider,
    PodIdentityCredentials,
    StaticCredentials,
    default_credentials,
    env_credentials,
)
from image_gate.clouds.huawei.iam import IamPassword, IamToken, IamTokenAuth, PasswordRefused, iam_endpoint
from image_gate.clouds.huawei.signer import HuaweiSigner

__all__ = [
    "API_BASE_IMAGE",
    "API_LIST_IMAGES",
    "API_LIST_PROJECTS",
    "CLOUD",
    "DEFAULT_RATE",
    "CredentialsError",
    "CredentialsUnavailable",
    "HssClient",
    "HuaweiAuth",
    "HuaweiCredentials",
    "HuaweiCredentialsProvider",
    "HuaweiSigner",
    "IamPassword",
    "IamToken",
    "IamTokenAuth",
    "PasswordRefused",
    "PodIdentityCredentials",
    "RegistryImage",
    "StaticCredentials",
    "configured",
    "configured_iam_endpoint",
    "default_auth",
    "default_credentials",
    "env_credentials",
    "hss_endpoint",
    "iam_endpoint",
    "normalise_digest",
]
