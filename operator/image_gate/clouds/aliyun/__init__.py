"""
Alibaba Cloud: the Security Center (SAS) client that answers an ACR image's registry digest.

* `SasClient` -- ``find_repository`` and ``registry_digest``, returning outcomes.
* `AliyunSigner` -- ``ACS3-HMAC-SHA256`` request signing as an `httpx.Auth`.
* `from_environment` -- credentials the way the vendor's SDK finds them
  (AccessKey variables, then RRSA), as an `AliyunCredentialsProvider`;
  `configured` says whether the environment sets any of them.
"""

from image_gate.clouds.aliyun import client, credentials

# The client and credentials modules are public whole: their own __all__ lists say what
# they export, once (the star imports bind exactly those names).
from image_gate.clouds.aliyun.client import *  # noqa: F403
from image_gate.clouds.aliyun.credentials import *  # noqa: F403
from image_gate.clouds.aliyun.signer import AliyunSigner

__all__ = [
    *client.__all__,
    *credentials.__all__,
    "AliyunSigner",
]
