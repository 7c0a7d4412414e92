#!/usr/bin/env bash
# The image-gate demo, in one command, on a fresh machine or an old one:
#   1. a virtualenv (.venv) with image-gate, cloudsim and harness (same as scripts/test.sh);
#   2. the control plane binaries, built once into ~/.cache/image-gate and reused;
#   3. a throwaway control plane (etcd, kube-apiserver, kube-controller-manager on 127.0.0.1),
#      cloudsim (the HSS and SAS simulators, over HTTPS with a generated CA) and image-gate;
#   4. the CRD, the webhook configuration (from the chart), the policies in examples/policies/,
#      then pods: one admitted, two refused (HSS base OS, ACR digest), one admitted with a warning;
#   5. everything stopped and deleted on exit, also on Ctrl-C or failure.
#
# Usage: bash scripts/demo.sh [--record FILE.md]
#   --record writes the transcript (commands and their real output) as Markdown to FILE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

RECORD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD="${2:?--record needs a file}"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: bash scripts/demo.sh [--record FILE.md]" >&2; exit 2 ;;
  esac
done

START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/image-gate-demo.XXXXXX")"
TRANSCRIPT="$WORK/transcript.txt"
: >"$TRANSCRIPT"
PIDS=()

# -- output ------------------------------------------------------------------------------------
# say: a comment line of the transcript. show: echo a command like a shell would, run it, print its
# real output (stderr and stdout interleaved as a terminal shows them). Both also go to the transcript.
say() { printf '%s\n' "$*" | tee -a "$TRANSCRIPT"; }
show() {
  printf '$ %s\n' "$1" | tee -a "$TRANSCRIPT"
  local status=0
  bash -o pipefail -c "$1" 2>&1 | tee -a "$TRANSCRIPT" || status=$?
  return "$status"
}
# refused: like show, but the command must fail (an admission refusal); a success is a demo failure.
refused() {
  if show "$1"; then
    echo "demo: expected the API server to refuse that, but it was admitted" >&2
    exit 1
  fi
}
quiet() { "$@" >>"$WORK/setup.log" 2>&1; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    echo "demo: failed (exit $status); last lines of the logs:" >&2
    for log in "$WORK"/*.log; do
      [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- 1 + 2: what the demo needs ----------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]' -e ./dev
bash harness/build.sh >&2
SETUP_SECONDS=$((SECONDS - START))

# -- 3: control plane, cloudsim, image-gate ----------------------------------------------------
wait_for_file() { # FILE SECONDS PID: until FILE exists; fail if PID exits first
  local deadline=$((SECONDS + $2))
  until [ -s "$1" ]; do
    kill -0 "$3" 2>/dev/null || { echo "demo: a background process exited during start-up" >&2; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "demo: timed out waiting for $1" >&2; return 1; }
    sleep 0.2
  done
}

python -m harness up --env-file "$WORK/cp.env" >"$WORK/control-plane.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/cp.env" 120 "${PIDS[-1]}"
set -a
# shellcheck disable=SC1091
. "$WORK/cp.env"
set +a
export PATH="$IMAGE_GATE_K8S_BIN:$PATH"
export KUBECACHEDIR="$WORK/kube-cache" HELM_CACHE_HOME="$WORK/helm-cache" HELM_CONFIG_HOME="$WORK/helm-config"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

# cloudsim's HTTPS certificate, from a CA made for this run.
python -c 'import sys; from pathlib import Path; from image_gate.app.certs import generate_development_certificate as g; g(Path(sys.argv[1]), ["127.0.0.1"])' "$WORK/cloud-tls"
python -m cloudsim --tls-cert "$WORK/cloud-tls/tls.crt" --tls-key "$WORK/cloud-tls/tls.key" \
  --ready-file "$WORK/cloudsim.json" >"$WORK/cloudsim.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/cloudsim.json" 30 "${PIDS[-1]}"
HSS_URL="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["hss"])' "$WORK/cloudsim.json")"
SAS_URL="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["sas"])' "$WORK/cloudsim.json")"

# The credentials cloudsim accepts (made up; see operator/cloudsim/catalogue.yaml).
read -r HUAWEICLOUD_SDK_AK HUAWEICLOUD_SDK_SK HUAWEICLOUD_SDK_PROJECT_ID ALIBABA_CLOUD_ACCESS_KEY_ID \
  ALIBABA_CLOUD_ACCESS_KEY_SECRET < <(python - <<'EOF'
from cloudsim.catalogue import Catalogue
c = Catalogue.load()
hw = next(x for x in c.huawei_credentials if not x.security_token)
al = next(x for x in c.aliyun_credentials if not x.security_token)
print(hw.ak, hw.sk, hw.project_id, al.access_key_id, al.access_key_secret)
EOF
)
read -r WEBHOOK_PORT HEALTH_PORT < <(python -c 'from harness.process import free_ports; print(*free_ports(2))')

say "# image-gate demo: a throwaway Kubernetes $(kubectl version -o json 2>/dev/null | python -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') control plane on 127.0.0.1,"
say "# cloudsim (Huawei Cloud HSS + Alibaba Cloud SAS simulators) at $HSS_URL and $SAS_URL,"
say "# and image-gate running as a local process (webhook https://127.0.0.1:$WEBHOOK_PORT)."
say ""
say "# The policy CRD, from the chart:"
show "kubectl apply -f charts/image-gate/crds/"
show "kubectl wait --for=condition=Established crd/imagegatepolicies.imagegate.io"

HUAWEICLOUD_SDK_AK=$HUAWEICLOUD_SDK_AK HUAWEICLOUD_SDK_SK=$HUAWEICLOUD_SDK_SK \
  HUAWEICLOUD_SDK_PROJECT_ID=$HUAWEICLOUD_SDK_PROJECT_ID \
  ALIBABA_CLOUD_ACCESS_KEY_ID=$ALIBABA_CLOUD_ACCESS_KEY_ID ALIBABA_CLOUD_ACCESS_KEY_SECRET=$ALIBABA_CLOUD_ACCESS_KEY_SECRET \
  IMAGE_GATE_HSS_ENDPOINT="$HSS_URL" IMAGE_GATE_SAS_ENDPOINT="$SAS_URL" \
  IMAGE_GATE_CLOUD_CA_FILE="$WORK/cloud-tls/ca.crt" IMAGE_GATE_NAMESPACE=image-gate IMAGE_GATE_LOG_FORMAT=text \
  image-gate run --listen-address 127.0.0.1 --port "$WEBHOOK_PORT" --health-port "$HEALTH_PORT" \
  --webhook-host 127.0.0.1 --cert-dir "$WORK/webhook-tls" >"$WORK/image-gate.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/webhook-tls/ca.crt" 30 "${PIDS[-1]}"
deadline=$((SECONDS + 60))
until curl --silent --fail --noproxy '*' --cacert "$WORK/webhook-tls/ca.crt" \
  "https://127.0.0.1:$HEALTH_PORT/readyz" >/dev/null 2>&1; do
  kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "demo: image-gate exited" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "demo: image-gate not ready after 60s" >&2; exit 1; }
  sleep 0.2
done
export WEBHOOK_CA="$WORK/webhook-tls/ca.crt" WEBHOOK_PORT

say ""
say "# image-gate is ready (https://127.0.0.1:$HEALTH_PORT/readyz). The API server calls it through the"
say "# chart's ValidatingWebhookConfiguration, pointed at the local process (webhook.url + caBundle):"
say "# (\$WEBHOOK_CA is the development CA image-gate generated into its --cert-dir.)"
show "helm template image-gate charts/image-gate --namespace image-gate --show-only templates/validatingwebhookconfiguration.yaml --set webhook.url=https://127.0.0.1:$WEBHOOK_PORT --set webhook.caBundle=\"\$(base64 -w0 \"\$WEBHOOK_CA\")\" | kubectl apply -f -"

say ""
say "# The example policies: approved base OS for SWR (HSS), pinned digests for ACR (SAS), and a"
say "# Warn-mode rule for namespaces that opt in:"
show "kubectl apply -f examples/policies/"
show "kubectl wait --for=condition=Ready imagegatepolicy --all --timeout=30s"
show "kubectl get igp"

say ""
say "# A namespace for the demo's pods:"
show "kubectl create namespace demo"
quiet kubectl wait --for=create serviceaccount/default --namespace demo --timeout=30s

say ""
say "# An image built on Ubuntu 22.04 is admitted:"
show "kubectl -n demo run api --image=swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
say ""
say "# An image built on CentOS 7 is refused, with what to fix:"
refused "kubectl -n demo run legacy --image=swr.cn-north-4.myhuaweicloud.com/demo/legacy-batch:2.3.0"
say ""
say "# An ACR image pinned to a digest the registry no longer serves for its tag is refused:"
refused "kubectl -n demo run web --image=demo-registry.cn-hangzhou.cr.aliyuncs.com/shop/web:2.0@sha256:8819236b5d5363b7de82e88ee6ccddbb9efd840367af1f7ecb59307c0207a911"
say ""
say "# Each denial is also a Warning Event:"
deadline=$((SECONDS + 20))
until [ "$(kubectl -n demo get events --field-selector reason=ImageGateDenied -o name | wc -l)" -ge 2 ]; do
  [ $SECONDS -lt $deadline ] || break
  sleep 0.2
done
show "kubectl -n demo get events --field-selector reason=ImageGateDenied"
say ""
say "# Warn mode: once the namespace opts in, unpinned SWR images are admitted with a warning:"
show "kubectl label namespace demo imagegate.io/pinning=warn"
# image-gate learns namespace labels from its watch: wait until the label has reached it.
deadline=$((SECONDS + 20))
until kubectl -n demo create --dry-run=server -o name -f - 2>&1 >/dev/null <<'EOF' | grep -q '^Warning: '
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec: {containers: [{name: probe, image: swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2}]}
EOF
do
  [ $SECONDS -lt $deadline ] || break
  sleep 0.2
done
show "kubectl -n demo run api-2 --image=swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2"
say ""
show "kubectl -n demo get pods"

DEMO_SECONDS=$((SECONDS - START - SETUP_SECONDS))
say ""
say "# Done in ${DEMO_SECONDS}s (plus ${SETUP_SECONDS}s for the virtualenv and the cached build);"
say "# everything is stopped and deleted now."

if [ -n "$RECORD" ]; then
  case "$RECORD" in /*) OUT="$RECORD" ;; *) OUT="$REPO/$RECORD" ;; esac
  {
    echo "# image-gate demo transcript"
    echo
    echo "A real run of \`bash scripts/demo.sh --record $RECORD\` at commit"
    echo "\`$(git -C "$REPO" rev-parse --short HEAD)\`, $(date -u '+%Y-%m-%d %H:%M UTC'). Everything below is"
    echo "the script's own output: each \`\$ \` line is the command it ran, followed by that command's"
    echo "output (stderr and stdout as the terminal shows them)."
    echo
    echo '```console'
    cat "$TRANSCRIPT"
    echo '```'
  } >"$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
  echo "demo: transcript written to $RECORD" >&2
fi
