#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine or an old one:
#   1. a virtualenv (.venv) with image-gate and its test dependencies, and the development-only
#      packages cloudsim and harness (dev/pyproject.toml), all installed editable;
#   2. the control plane binaries (kube-apiserver, kube-controller-manager, etcd,
#      helm, kubectl), built once into ~/.cache/image-gate and reused; the container image
#      (scripts/build-image.sh: buildah, no Docker);
#   3. lint (ruff), types (mypy), then unit + integration tests, then the e2e
#      tests against a real kube-apiserver.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

stamp() { date +%s; }
took() { echo "[test] $1 took $(( $(stamp) - $2 ))s"; }

start=$(stamp)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]' -e ./dev
took "python dependencies" "$start"

step=$(stamp)
bash harness/build.sh
took "control plane build (cached after the first run)" "$step"

# The container image (buildah; the Debian-packaged Python base is cached in local storage), for
# tests/e2e/test_image.py: it runs the image as the webhook.
step=$(stamp)
bash scripts/build-image.sh
took "image build (base cached after the first run)" "$step"

step=$(stamp)
ruff check operator tests bench harness
ruff format --check operator tests bench harness
mypy
lint-imports
took "lint and types" "$step"

step=$(stamp)
python -m pytest -m "not e2e" "$@"
took "unit and integration tests" "$step"

step=$(stamp)
python -m pytest -m e2e "$@"
took "e2e tests" "$step"

took "everything" "$start"
