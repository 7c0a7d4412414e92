"""
The clouds and cloud APIs image-gate calls, by the names outcomes, logs and metrics give them.

One home for the cloud clients, which re-export them (`image_gate.clouds.huawei`,
`image_gate.clouds.aliyun`), and for the resolver, which names the API a failure its caches make
themselves belongs to (a lookup that outlived its deadline, a shutdown). They live in ``core``,
below both, because the resolver may not import the clients after all: the webhook imports the
shared facts, which import the resolver, and the webhook may import nothing that signs a request
(the import-linter contracts in ``pyproject.toml``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALIYUN",
    "HSS_BASE_IMAGE",
    "HSS_LIST_IMAGES",
    "HUAWEI",
    "SAS_DESCRIBE_IMAGE",
    "SAS_DESCRIBE_IMAGE_INSTANCES",
]

HUAWEI: Final = "huawei"
"""Huawei Cloud: base images from Host Security Service (HSS)."""

ALIYUN: Final = "aliyun"
"""Alibaba Cloud: registry digests from Security Center (SAS)."""

HSS_LIST_IMAGES = "ListRegistryImages"
"""HSS: an SWR image's HSS id, by namespace, name and tag (or digest)."""

HSS_BASE_IMAGE = "ListImageBasicImage"
"""HSS: the base image HSS found when it scanned an image."""

SAS_DESCRIBE_IMAGE_INSTANCES = "DescribeImageInstances"
"""SAS: an ACR repository's ids, by region, instance, namespace and name."""

SAS_DESCRIBE_IMAGE = "DescribeImage"
"""SAS: the digest one tag of a repository points at."""
