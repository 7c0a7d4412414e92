"""
Huawei Cloud: HSS base-image lookups, ``SDK-HMAC-SHA256`` signing, IAM tokens, credential sources.

    if configured():                            # env AK/SK, CCE Pod Identity, or IAM password
        async with HssClient(default_auth()) as hss:
            found = await hss.find_image(image, location, deadline=deadline)
            if isinstance(found, Found):
                outcome = await hss.base_image(found.value, location, deadline=deadline)

See ``docs/huawei.md`` for credentials, permissions and endpoints.
"""

from image_gate.clouds.huawei import client, credentials
from image_gate.clouds.huawei.auth import HuaweiAuth, configured, configured_iam_endpoint, default_auth

# The client and credentials modules are public whole: their own __all__ lists say what
# they export, once (the star imports bind exactly those names).
from image_gate.clouds.huawei.client import *  # noqa: F403
from image_gate.clouds.huawei.credentials import *  # noqa: F403
from image_gate.clouds.huawei.iam import IamPassword, IamToken, IamTokenAuth, PasswordRefused, iam_endpoint
from image_gate.clouds.huawei.signer import HuaweiSigner

__all__ = [
    *client.__all__,
    *credentials.__all__,
    "HuaweiAuth",
    "HuaweiSigner",
    "IamPassword",
    "IamToken",
    "IamTokenAuth",
    "PasswordRefused",
    "configured",
    "configured_iam_endpoint",
    "default_auth",
    "iam_endpoint",
]
