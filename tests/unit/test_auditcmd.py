"""``image-gate audit``'s judgement and output, without a cluster: what is listed, how, and the exit code.

The pass is the leader's (`image_gate.core.audit.audit`) over stored facts given here; reading the
cluster is tested against a real API server in ``tests/e2e/test_audit_cli.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from image_gate.app.auditcmd import COLUMNS, EXIT_ERROR, Preview
from image_gate.app.cli import _parser, main
from image_gate.app.settings import Settings
from image_gate.core.audit import AuditedObject, audit, audited_object
from image_gate.core.imagefacts import ImageFacts
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import BaseImage, Found, NotFound
from image_gate.core.policy import CompiledPolicy, compile_policy

UBUNTU = "swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
CENTOS = "swr.cn-north-4.myhuaweicloud.com/demo/legacy-batch:2.3.0"
UNKNOWN = "swr.cn-north-4.myhuaweicloud.com/demo/new:1.0"
UNSYNCED = "swr.cn-north-4.myhuaweicloud.com/demo/unsynced:1.0"
FACTS = {
    UNSYNCED: ImageFacts(base_image=NotFound("HSS does not list demo/unsynced:1.0: HSS has not synced this image")),
    UBUNTU: ImageFacts(base_image=Found(BaseImage("Ubuntu", "22.04", "sha256:" + "a" * 64))),
    CENTOS: ImageFacts(base_image=Found(BaseImage("CentOS Linux", "7.9.2009", "sha256:" + "c" * 64))),
}


class StoredFacts:
    """The store as the audit reads it: what it holds, None for what it does not."""

    def known(self, image: ImageReference, *, base_image: bool, digest: bool) -> ImageFacts | None:
        return FACTS.get(str(image))


def policy(mode: str, on_unresolved: str = "Deny") -> CompiledPolicy:
    return compile_policy(
        "approved-base-os",
        {
            "mode": mode,
            "onUnresolved": on_unresolved,
            "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
            "baseImage": {"allowedOS": [{"name": "Ubuntu", "versions": ["22.04"]}]},
        },
    )


def pod(name: str, image: str, namespace: str = "shop") -> AuditedObject:
    body = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": name, "image": image}]},
    }
    obj = audited_object("Pod", body)
    assert obj is not None
    return obj


def preview(mode: str, *images: str, on_unresolved: str = "Deny") -> Preview:
    objects = [pod(f"p{n}", image) for n, image in enumerate(images)]
    labels: Mapping[str, Mapping[str, str]] = {"shop": {}}
    policies = [policy(mode, on_unresolved)]
    judged = audit(objects, policies, lambda name: labels.get(name, {}), StoredFacts())
    return Preview.of(judged, objects=len(objects), policies=policies)


def test_a_failing_container_is_listed_in_the_table_in_the_denials_words_and_would_be_denied() -> None:
    result = preview("Audit", UBUNTU, CENTOS)
    assert result.would_deny
    header, row, summary = result.table(show_all=False).splitlines()
    assert header.split() == list(COLUMNS)
    assert row.split()[:7] == ["shop", "Pod", "p1", "p1", CENTOS, "approved-base-os", "fail"]
    assert row.endswith("rule baseImage.allowedOS: found CentOS Linux 7.9.2009, expected Ubuntu 22.04")
    assert summary == "1 fail, 0 warn, 0 error, 1 pass, 0 skip (2 objects, 1 policies (approved-base-os))"
    # --all lists the passing container too, after what needs attention.
    rows = result.table(show_all=True).splitlines()[1:-1]
    assert [line.split()[6] for line in rows] == ["fail", "pass"]


def test_a_warn_policy_gives_warn_results_which_enforce_would_deny() -> None:
    result = preview("Warn", CENTOS)
    assert [r.result for r in result.results] == ["warn"]
    assert result.would_deny


def test_a_fact_not_stored_is_an_error_not_resolved_yet_and_denies_nothing() -> None:
    result = preview("Enforce", UBUNTU, UNKNOWN)
    assert not result.would_deny
    (error,) = [r for r in result.results if r.result == "error"]
    assert error.message == (
        f'container "p1" (image {UNKNOWN}): policy "approved-base-os" rule baseImage could not be checked: '
        "not resolved yet (the cluster has stored no fact about this image)"
    )
    assert result.unresolved == (UNKNOWN,)
    lines = result.table(show_all=False).splitlines()
    assert lines[1].endswith(
        "rule baseImage could not be checked: not resolved yet (the cluster has stored no fact about this image)"
    )
    assert lines[-1].startswith("1 images have facts the cluster has not resolved yet")


def test_a_stored_not_found_under_on_unresolved_deny_would_be_denied_as_admission_would() -> None:
    denying = preview("Enforce", UNSYNCED)
    (error,) = denying.results
    assert error.result == "error"
    assert "HSS has not synced this image" in error.message
    assert denying.would_deny
    assert denying.table(show_all=False).splitlines()[-1] == (
        "1 error results stand on a stored lookup failure or 'not found' under onUnresolved: Deny: "
        "admission would deny them too"
    )
    assert not preview("Enforce", UNSYNCED, on_unresolved="Allow").would_deny


def test_json_holds_every_result_with_its_fields_and_the_summary() -> None:
    document: dict[str, Any] = json.loads(json.dumps(preview("Audit", UBUNTU, CENTOS, UNKNOWN).as_json()))
    assert document["wouldDeny"] is True
    assert document["summary"] == {"fail": 1, "warn": 0, "error": 1, "pass": 1, "skip": 0}
    assert document["unresolved"] == [UNKNOWN]
    assert [r["result"] for r in document["results"]] == ["fail", "error", "pass"]
    fail = document["results"][0]
    assert (fail["found"], fail["expected"], fail["rule"]) == (
        "CentOS Linux 7.9.2009",
        "Ubuntu 22.04",
        "baseImage.allowedOS",
    )


def test_nothing_to_judge_lists_no_table_only_the_summary() -> None:
    result = preview("Enforce")
    assert (
        result.table(show_all=True)
        == "0 fail, 0 warn, 0 error, 0 pass, 0 skip (0 objects, 1 policies (approved-base-os))"
    )
    assert not result.would_deny


def test_namespace_is_the_audited_namespace_not_image_gates_own() -> None:
    args = _parser().parse_args(["audit", "--namespace", "shop", "--output", "json"])
    assert args.audit_namespace == "shop"
    settings = Settings.from_arguments(args, environ={})
    assert settings.namespace is None
    assert "shop" not in settings.exempt_namespaces


def test_an_unreadable_policy_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--policy", str(tmp_path / "missing.yaml")]) == EXIT_ERROR
    assert "missing.yaml: cannot read" in capsys.readouterr().err


def test_the_readmes_roll_out_tables_are_what_the_preview_prints() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Rolling a policy out: Audit → Warn → Enforce\n", 1)[1].split("\n## ", 1)[0]
    shown = [
        block.split("\n$ echo $?")[0] for block in section.split("$ image-gate audit --namespace shop-fbe7a8\n")[1:]
    ]
    namespace = "shop-fbe7a8"

    def workload(kind: str, name: str, image: str) -> AuditedObject:
        template = {"spec": {"containers": [{"name": name, "image": image}]}}
        spec: dict[str, Any] = {"template": template}
        if kind == "CronJob":
            spec = {"jobTemplate": {"spec": {"template": template}}}
        obj = audited_object(kind, {"metadata": {"name": name, "namespace": namespace, "uid": name}, "spec": spec})
        assert obj is not None
        return obj

    def table(mode: str, objects: list[AuditedObject]) -> str:
        spec = {
            "mode": mode,
            "match": {"images": ["swr.*.myhuaweicloud.com/**"]},
            "baseImage": {
                "allowedOS": [{"name": "Ubuntu", "versions": ["22.04", "24.04"]}],
                "deniedOS": [{"name": "CentOS"}],
            },
        }
        judged = audit(objects, [compile_policy("approved-base-os", spec)], lambda name: {}, StoredFacts())
        return Preview.of(judged, objects=len(objects)).table(show_all=False)

    running = [
        workload("Deployment", "api", UBUNTU),
        workload("Deployment", "batch", CENTOS),
        pod("legacy", CENTOS, namespace),
        workload("CronJob", "report", UBUNTU),
    ]
    fixed = [workload("Deployment", "api", UBUNTU), workload("Deployment", "batch", UBUNTU), running[3]]
    assert shown == [table("Audit", running), table("Warn", running), table("Enforce", fixed)]
