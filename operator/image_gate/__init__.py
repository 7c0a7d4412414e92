"""
image-gate: a Kubernetes admission controller that judges container images by their base OS
(Huawei Cloud HSS) and their registry digest (Alibaba Cloud Container Registry).

The pure core is public here: parse image references, compile ImageGatePolicy specs, plan and
decide admissions, and the outcomes of cloud lookups. The cloud clients live in
``image_gate.clouds.huawei`` and ``image_gate.clouds.aliyun``; the operator (kopf) in
``image_gate.app.run``, loaded only by ``image-gate run``.
"""

from importlib.metadata import PackageNotFoundError, version

from image_gate.core import outcomes
from image_gate.core.admission import Admission, Review
from image_gate.core.evaluate import Decision, Subject, decide, plan
from image_gate.core.findings import Finding
from image_gate.core.imagefacts import ImageFacts, StaleFact
from image_gate.core.images import ImageReference, InvalidImageReference

# Every outcome type, re-exported as the module lists it (as asyncio re-exports its submodules):
# one list to keep, here and in image_gate.core.outcomes.
from image_gate.core.outcomes import *  # noqa: F403
from image_gate.core.policy import CompiledPolicy, PolicyError, compile_policy
from image_gate.core.workloads import Container, containers_of

try:
    __version__ = version("image-gate")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Admission",
    "CompiledPolicy",
    "Container",
    "Decision",
    "Finding",
    "ImageFacts",
    "ImageReference",
    "InvalidImageReference",
    "PolicyError",
    "Review",
    "StaleFact",
    "Subject",
    "__version__",
    "compile_policy",
    "containers_of",
    "decide",
    "plan",
    *outcomes.__all__,
]
