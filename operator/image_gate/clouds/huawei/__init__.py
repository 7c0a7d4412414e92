"""
Huawei Cloud: HSS base-image lookups, ``SDK-HMAC-SHA256`` signing, IAM tokens, credential sources.

    auth = default_auth()                       # env AK/SK, CCE Pod Identity, or IAM password
    async with HssClient(auth) as hss:
        outcome = await hss.lookup_base_image(image, location, deadline=Deadline.after(3.0))

See ``docs/huawei.md`` for credentials, permissions and endpoints.
"""

from image_gate.clouds.huawei.auth import HuaweiAuth, default_auth
from image_gate.clouds.huawei.client import (
    API_BASE_IMAGE,
    API_LIST_IMAGES,
    API_LIST_PROJECTS,
    DEFAULT_RATE,
    HssClient,
    RegistryImage,
    hss_endpoint,
    normalise_digest,
)
from image_gate.clouds.huawei.credentials import (
    CredentialsError,
    CredentialsProvider,
    CredentialsUnavailable,
    HuaweiCredentials,
    PodIdentityCredentials,
    StaticCredentials,
    default_credentials,
    env_credentials,
)
from image_gate.clouds.huawei.iam import IamPassword, IamToken, IamTokenAuth, iam_endpoint
from image_gate.clouds.huawei.signer import HuaweiSigner

__all__ = [
    "API_BASE_IMAGE",
    "API_LIST_IMAGES",
    "API_LIST_PROJECTS",
    "DEFAULT_RATE",
    "CredentialsError",
    "CredentialsProvider",
    "CredentialsUnavailable",
    "HssClient",
    "HuaweiAuth",
    "HuaweiCredentials",
    "HuaweiSigner",
    "IamPassword",
    "IamToken",
    "IamTokenAuth",
    "PodIdentityCredentials",
    "RegistryImage",
    "StaticCredentials",
    "default_auth",
    "default_credentials",
    "env_credentials",
    "hss_endpoint",
    "iam_endpoint",
    "normalise_digest",
]
