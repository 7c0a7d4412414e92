#!/usr/bin/env bash
# Render manifests/image-gate.yaml, the plain-YAML install for kubectl users, from the Helm
# chart with its default values:
#
#   bash scripts/render-manifests.sh            # writes manifests/image-gate.yaml
#   bash scripts/render-manifests.sh OUT.yaml   # writes elsewhere (tests compare against it)
#
# Decisions:
# * Release "image-gate" in namespace "image-gate"; a Namespace object is prepended (helm does
#   not render one), labelled for the "restricted" Pod Security Standard, which the pods meet.
# * certificates.mode=certManager. With the chart's default mode (helm) every render generates a
#   new random CA and key, so the file would change on every run and a private key would be
#   committed to git. cert-manager issues the certificate inside the cluster instead and
#   injects the CA into the webhook configuration, so the file is deterministic and holds no
#   secret. The cost: kubectl users need cert-manager (v1.x) installed first. Users without
#   cert-manager should install with Helm, where the default mode needs nothing extra.
# * --include-crds: the ImageGatePolicy CRD from charts/image-gate/crds/ comes first.
#
# tests/unit/test_chart.py fails when the committed file differs from a fresh render.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo_root/manifests/image-gate.yaml}"
cache="${IMAGE_GATE_CACHE:-$HOME/.cache/image-gate}"

find_helm() {
  if [[ -n "${HELM:-}" ]]; then echo "$HELM"; return; fi
  if command -v helm >/dev/null 2>&1; then command -v helm; return; fi
  local candidate
  for candidate in "$cache/tools/helm" "$cache"/k8s-v*/bin/helm; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
  done
  echo "render-manifests: helm not found (set HELM, put it on PATH, or run bash harness/build.sh)" >&2
  exit 1
}
helm="$(find_helm)"

release=image-gate
namespace=image-gate

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
{
  cat <<HEADER
# image-gate: plain Kubernetes manifests, rendered from charts/image-gate by
# scripts/render-manifests.sh. Do not edit: change the chart and re-render.
#
# Requires cert-manager (https://cert-manager.io) for the webhook's serving certificate.
#   kubectl apply --server-side -f manifests/image-gate.yaml
# then create ImageGatePolicies. The webhook's failurePolicy is Fail: while no image-gate pod
# answers, Pods cannot be created in the checked namespaces. Recovery:
#   kubectl delete validatingwebhookconfiguration $release
# Cloud credentials: see charts/image-gate/values.yaml (credentials.*); with plain manifests,
# add the env vars / ServiceAccount annotations to the objects below yourself.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/part-of: image-gate
    pod-security.kubernetes.io/enforce: restricted
    imagegate.io/ignore: "true"
HEADER
  "$helm" template "$release" "$repo_root/charts/image-gate" \
    --namespace "$namespace" \
    --include-crds \
    --set certificates.mode=certManager
} > "$tmp"
mkdir -p "$(dirname "$out")"
chmod 0644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "render-manifests: wrote $out" >&2
