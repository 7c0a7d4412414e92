"""AdmissionReviews as the API server sends them, for the tests and the benchmarks that post them."""

from __future__ import annotations

from typing import Any

__all__ = ["review"]


def review(
    obj: Any = None, *, operation: str = "CREATE", old: Any = None, uid: str = "0d1f", **request: Any
) -> dict[str, Any]:
    """An AdmissionReview of a pod as the API server sends it; ``request`` fields override (or break) it."""
    body: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop",
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    body.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}
