"""Reports against the PolicyReport CRD the chart installs: every field known to its schema, of its type and enum.

The API server prunes fields a structural schema does not name and refuses
wrong types or enum values; this walks the CRD's ``openAPIV3Schema`` the same
way (the subset of OpenAPI the CRD uses), so a report that passes here is
stored as built.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml

from image_gate.core.audit import AuditResult
from image_gate.core.reports import FirstSeen, policy_reports

CHART_FILES = Path(__file__).resolve().parents[2] / "charts" / "image-gate" / "files"
POLICY_REPORT_CRD = CHART_FILES / "wgpolicyk8s.io_policyreports.yaml"
_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "number": (int, float),
}


def problems(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """What the API server would prune or refuse in ``value`` under ``schema``."""
    found: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        expected = _TYPES[kind]
        if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
            return [f"{where or '.'}: not {kind}: {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key in schema.get("required", []):
                if key not in value:
                    found.append(f"{where}.{key}: required")
            for key, item in value.items():
                if key not in properties:
                    if not schema.get("x-kubernetes-preserve-unknown-fields"):
                        found.append(f"{where}.{key}: not in the schema (pruned)")
                    continue
                found += problems(item, properties[key], f"{where}.{key}")
        elif "additionalProperties" in schema:
            for key, item in value.items():
                found += problems(item, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{index}]")
    return found


def served_schema(crd_file: Path, version: str) -> dict[str, Any]:
    crd = yaml.safe_load(crd_file.read_text())
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def every_kind_of_result() -> list[AuditResult]:
    image = "swr.cn-north-4.myhuaweicloud.com/shop/app:1"
    return [
        AuditResult("shop", "Pod", "web", "uid-1", "app", image, "p", "r1", "fail", "m", "f", "e", "high"),
        AuditResult("shop", "Deployment", "web", "uid-2", "app", image, "p", "r", "warn", "m", "f", "e", "info"),
        AuditResult("shop", "CronJob", "web", "", "app", image, "p", "baseImage", "error", "m", "f", "", None),
        AuditResult("shop", "Job", "web", "uid-3", "app", image, "p", "r", "skip", "m", "", "", "critical"),
        AuditResult("shop", "Pod", "web", "uid-1", "app", image, "p", "r", "pass", "m", "", "", "low"),
    ]  # fmt: skip


def test_the_schema_check_catches_what_the_api_server_would() -> None:
    schema = served_schema(POLICY_REPORT_CRD, "v1alpha2")
    report = policy_reports(every_kind_of_result())["shop"]
    report["results"][0]["severity"] = "urgent"
    report["results"][1]["extra"] = "x"
    report["summary"]["pass"] = "1"
    found = sorted(problems(report, schema))
    assert [problem.split(" not in [")[0] for problem in found] == [
        ".results[0].severity: 'urgent'",
        ".results[1].extra: not in the schema (pruned)",
        ".summary.pass: not integer: '1'",
    ]


@pytest.mark.parametrize(
    ("flavour", "crd_file", "version"),
    [
        ("wgpolicy", POLICY_REPORT_CRD, "v1alpha2"),
        ("openreports", CHART_FILES / "openreports.io_reports.yaml", "v1alpha1"),
    ],
)
def test_a_report_is_stored_as_built(flavour: Any, crd_file: Path, version: str) -> None:
    if not crd_file.exists():
        pytest.skip(f"the chart has no {crd_file.name}")
    results = every_kind_of_result()
    seen = FirstSeen()
    seen.update(results, at=1_764_668_700.5)
    report = policy_reports([*results, *[results[4]] * 1200], flavour=flavour, timestamps=seen)["shop"]
    assert report["metadata"].get("annotations")  # the cap's annotation is checked too
    assert problems(report, served_schema(crd_file, version)) == []
