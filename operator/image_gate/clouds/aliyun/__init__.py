"""
Alibaba Cloud: the Security Center (SAS) client that answers an ACR image's registry digest.

* `SasClient` -- ``find_repository`` and ``registry_digest``, returning outcomes.
* `AliyunSigner` -- ``ACS3-HMAC-SHA256`` request signing as an `httpx.Auth`.
* `from_environment` -- credentials the way the vendor's SDK finds them
  (AccessKey variables, then RRSA), as an `AliyunCredentialsProvider`;
  `configured` says whether the environment sets any of them.
"""

from image_gate.clouds.aliyun.client import (
    API_DESCRIBE_IMAGE,
    API_DESCRIBE_IMAGE_INSTANCES,
    CLOUD,
    DEFAULT_RATE,
    SAS_API_VERSION,
    SAS_ENDPOINTS,
    AcrRepository,
    SasClient,
)
from image_gate.clouds.aliyun.credentials import (
    AliyunCredential,
    AliyunCredentialsProvider,
    CredentialsError,
    CredentialsUnavailable,
    RrsaCredentials,
    StaticCredentials,
    configured,
    fingerprint,
    from_environment,
)
from image_gate.clouds.aliyun.signer import AliyunSigner

__all__ = [
    "API_DESCRIBE_IMAGE",
    "API_DESCRIBE_IMAGE_INSTANCES",
    "CLOUD",
    "DEFAULT_RATE",
    "SAS_API_VERSION",
    "SAS_ENDPOINTS",
    "AcrRepository",
    "AliyunCredential",
    "AliyunCredentialsProvider",
    "AliyunSigner",
    "CredentialsError",
    "CredentialsUnavailable",
    "RrsaCredentials",
    "SasClient",
    "StaticCredentials",
    "configured",
    "fingerprint",
    "from_environment",
]
