"""The chart's HorizontalPodAutoscaler: off by default (the Deployment keeps its replica count), on by value.

Server-side validation of the rendered object is the ``autoscaling`` scenario of
tests/e2e/test_chart_dryrun.py; the invariants every scenario meets are in tests/unit/test_chart.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import HELM_HOW_TO, Doc, of_kind, one, render, render_error, require_tool


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm", HELM_HOW_TO)


def on(**autoscaling: Any) -> dict[str, Any]:
    return {"autoscaling": {"enabled": True, **autoscaling}}


def test_off_by_default_the_deployment_keeps_its_replicas(helm: Path) -> None:
    docs = render(helm, {"replicaCount": 3})
    assert of_kind(docs, "HorizontalPodAutoscaler") == []
    assert one(docs, "Deployment")["spec"]["replicas"] == 3


def test_on_it_scales_the_deployment_on_cpu(helm: Path) -> None:
    docs = render(helm, on(minReplicas=2, maxReplicas=8, targetCPUUtilizationPercentage=60))
    deployment: Doc = one(docs, "Deployment")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    # The autoscaler owns the count: a replicas field would reset it at every helm upgrade.
    assert "replicas" not in deployment["spec"]


def test_utilization_needs_a_cpu_request(helm: Path) -> None:
    values = {**on(), "resources": {"requests": {"cpu": None}}}  # null deletes the chart's default request
    assert "autoscaling.enabled needs resources.requests.cpu" in render_error(helm, values)


def test_min_above_max_is_refused(helm: Path) -> None:
    error = render_error(helm, on(minReplicas=5, maxReplicas=3))
    assert "autoscaling.minReplicas (5) must not exceed autoscaling.maxReplicas (3)" in error


@pytest.mark.parametrize(
    "autoscaling",
    [
        pytest.param({"minReplicas": 0}, id="no-replicas"),
        pytest.param({"targetCPUUtilizationPercentage": 0}, id="zero-percent"),
        pytest.param({"targetCPUUtilizationPercentage": 101}, id="above-100-percent"),
        pytest.param({"cpu": 70}, id="unknown-key"),
    ],
)
def test_schema_refuses_bad_values(helm: Path, autoscaling: dict[str, Any]) -> None:
    assert "autoscaling" in render_error(helm, on(**autoscaling))
