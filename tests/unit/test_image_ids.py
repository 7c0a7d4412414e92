"""A bare image ID in a pod is judged as what it is: not a name, so no registry, no facts, a violation.

kubelet parses a pod's image with ParseNormalizedNamed, which refuses a 64-hex string; a runtime reached some
other way looks it up among the images already on the node. Either way no registry-scoped glob can say
whether it covers the image and no cloud holds facts about it, so, like every other reference that is not a
name, it violates every policy covering the namespace, whatever that policy's images are.
"""

from image_gate.core import messages
from image_gate.core.evaluate import Subject, decide, plan
from image_gate.core.findings import InvalidReference, ValidReference
from image_gate.core.policy import compile_policy
from image_gate.core.workloads import Container

IMAGE_ID = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
REASON = "an image ID (64 hex characters) names no registry or repository; use the image's name"


def test_an_image_id_is_denied_by_a_policy_scoped_to_a_registry() -> None:
    policy = compile_policy(
        "swr-os", {"match": {"images": ["swr.*.myhuaweicloud.com/**"]}, "baseImage": {"deniedOS": [{"name": "centos"}]}}
    )
    subject = Subject("Pod", "web", "shop", {}, (Container("container", "app", IMAGE_ID),))
    the_plan = plan(subject, [policy])
    assert the_plan.needs == {}, "nothing is looked up for an ID"
    decision = decide(the_plan, {})
    [finding] = decision.denials
    assert (finding.policy, finding.rule, finding.found, finding.expected) == (
        "swr-os",
        "image",
        InvalidReference(REASON),
        ValidReference(),
    )
    assert messages.finding_line(finding) == (
        f'container "app" (image {IMAGE_ID}): policy "swr-os" rule image: found {REASON}, '
        "expected a valid image reference"
    )


def test_an_image_id_only_warns_under_a_warn_policy() -> None:
    policy = compile_policy("w", {"mode": "Warn", "digest": {"requirePinned": True}})
    decision = decide(plan(Subject("Pod", "web", "shop", {}, (Container("container", "app", IMAGE_ID),)), [policy]), {})
    assert decision.allowed
    assert [finding.found for finding in decision.warnings] == [InvalidReference(REASON)]
