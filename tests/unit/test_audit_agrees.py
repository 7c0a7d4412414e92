"""The audit says what the webhook would: for any pods, facts and policy modes, the same findings in the same words.

The audit judges each distinct container once and shares the judgement between
pods and namespaces; the webhook judges a whole pod at a time. Hypothesis draws
clusters where those two could part ways (images shared across pods, namespaces
covered by different policies, facts stored or not, every mode).
"""

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from image_gate.core import messages
from image_gate.core.audit import AuditedObject, audit
from image_gate.core.evaluate import Subject, decide, plan
from image_gate.core.findings import Finding
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, NotFound, Outcome
from image_gate.core.policy import CompiledPolicy, compile_policy
from image_gate.core.workloads import Container

SWR = "swr.cn-north-4.myhuaweicloud.com/shop"
ACR = "shop-registry.cn-hangzhou.cr.aliyuncs.com/shop"
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
IMAGES = [
    f"{SWR}/app:1",
    f"{SWR}/app:1@{A}",
    f"{SWR}/old:7",
    f"{ACR}/svc:2",
    f"{ACR}/svc:2@{A}",
    f"{ACR}/svc@{B}",
    "nginx:1.27",
    "Not/A Reference",
]
BASE_IMAGES: list[Outcome[BaseImage] | None] = [
    Found(BaseImage("Debian GNU/Linux", "12", A)),
    Found(BaseImage("CentOS Linux", "7.9.2009", B)),
    NotFound(detail="HSS has not scanned this image yet"),
    None,  # not stored
]
DIGESTS: list[Outcome[str] | None] = [Found(A), Found(B), NotFound(detail="SAS does not know this tag"), None]
NAMESPACES = {"plain": {}, "opted-in": {"pin": "warn"}}
MODES = st.sampled_from(["Enforce", "Warn", "Audit"])


class StoredFacts:
    def __init__(self, facts: Mapping[ImageReference, ImageFacts]) -> None:
        self.facts = facts

    def known(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        known = self.facts.get(image, ImageFacts())
        if (base_image and known.base_image is None) or (digest and known.registry_digest is None):
            return None
        return known


@st.composite
def policies(draw: st.DrawFn) -> list[CompiledPolicy]:
    unresolved = st.sampled_from(["Deny", "Allow"])
    specs = {
        "base-os": {
            "mode": draw(MODES),
            "onUnresolved": draw(unresolved),
            "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
            "baseImage": {"allowedOS": [{"name": "Debian", "versions": [">=11"]}], "deniedOS": [{"name": "CentOS"}]},
        },
        "pinned": {
            "mode": draw(MODES),
            "match": {"namespaceSelector": {"matchLabels": {"pin": "warn"}}},
            "digest": {"requirePinned": True},
        },
        "acr": {
            "mode": draw(MODES),
            "onUnresolved": draw(unresolved),
            "match": {"images": ["*.*.cr.aliyuncs.com/**"]},
            "digest": {"matchRegistry": True, "allowed": [A]},
        },
        "everything": {"mode": draw(MODES), "baseImage": {"allowedLayerDigests": [A]}},
    }
    chosen = draw(st.lists(st.sampled_from(sorted(specs)), unique=True, min_size=1))
    return [compile_policy(name, specs[name]) for name in chosen]


@st.composite
def stored_facts(draw: st.DrawFn) -> dict[ImageReference, ImageFacts]:
    facts = {}
    for text in IMAGES[:-1]:
        facts[ImageReference.parse(text)] = ImageFacts(
            base_image=draw(st.sampled_from(BASE_IMAGES)), registry_digest=draw(st.sampled_from(DIGESTS))
        )
    return facts


@st.composite
def pods(draw: st.DrawFn) -> list[AuditedObject]:
    objects = []
    for n in range(draw(st.integers(1, 6))):
        images = draw(st.lists(st.sampled_from(IMAGES), min_size=1, max_size=4))
        containers = tuple(Container("container", f"c{i}", image) for i, image in enumerate(images))
        namespace = draw(st.sampled_from(sorted(NAMESPACES)))
        objects.append(AuditedObject("Pod", namespace, f"pod-{n}", f"uid-{n}", containers))
    return objects


def webhook_findings(obj: AuditedObject, policies: list[CompiledPolicy], facts: StoredFacts) -> list[Finding]:
    """What an admission of the pod would find, with the same facts."""
    subject = Subject("Pod", f"{obj.namespace}/{obj.name}", obj.namespace, NAMESPACES[obj.namespace], obj.containers)
    the_plan = plan(subject, policies)
    known = {image: facts.facts.get(image, ImageFacts()) for image in the_plan.needs}
    return list(decide(the_plan, known).findings)


@settings(max_examples=200, deadline=None)
@given(policies(), stored_facts(), pods())
def test_the_audit_finds_what_the_webhook_finds_in_its_words(
    chosen: list[CompiledPolicy], facts: dict[ImageReference, ImageFacts], objects: list[AuditedObject]
) -> None:
    store = StoredFacts(facts)
    result = audit(objects, chosen, lambda namespace: NAMESPACES[namespace], store)
    for obj in objects:
        expected: dict[tuple[str, str, str], list[Finding]] = {}
        for finding in webhook_findings(obj, chosen, store):
            expected.setdefault((finding.container.name, finding.policy, finding.rule), []).append(finding)
        reported = {
            (r.container, r.policy, r.rule): r
            for r in result.results
            if r.name == obj.name and r.result in ("fail", "warn", "error")
        }
        assert set(reported) == set(expected)
        for key, found in expected.items():
            first = found[0]
            audited = reported[key]
            if first.problem == "unresolved":
                assert audited.result == "error"
                if getattr(first.found, "outcome", None) is not None:  # stored, failed: the webhook's words
                    assert audited.message == "\n".join(messages.finding_line(f) for f in found)
            else:
                assert audited.result == ("warn" if first.mode == "Warn" else "fail")
                assert audited.message == "\n".join(messages.finding_line(f) for f in found)
