#!/usr/bin/env bash
# Build the image-gate container image from the Dockerfile with buildah: no Docker daemon, no
# registry login. The result lands in local container storage (/var/lib/containers/storage) as
#
#   localhost/image-gate:dev                   what the e2e tests run (tests/e2e/test_image.py)
#   ghcr.io/image-gate/image-gate:<version>    the chart's default image; a release pushes it with
#                                              `buildah push ghcr.io/image-gate/image-gate:<version>`
#
# The Dockerfile is the one users build with Docker; this script only chooses its base
# (the PYTHON_IMAGE build argument):
#   1. python:3.11-slim-bookworm when it can be pulled (or is already in local storage);
#   2. otherwise a Python 3.11 base made from Debian bookworm packages with mmdebstrap, kept in
#      local storage as localhost/image-gate-base:python3.11-bookworm, its root filesystem in
#      ~/.cache/image-gate/image-base/, both reused by later builds (--refresh-base rebuilds it,
#      e.g. for security updates).
# pip inside the build uses the host's index settings (`pip config list`: index URLs, trusted
# hosts, timeouts) and, when the host configures one, its CA bundle, as build secrets: neither
# ends up in a layer.
#
# Usage: bash scripts/build-image.sh [--oci-archive PATH] [--tag NAME] [--base IMAGE] [--debian-base]
#                                    [--refresh-base]
#   --oci-archive PATH  also write the image as an OCI archive (for `kind load image-archive`, skopeo)
#   --tag NAME          another name for the image (repeatable)
#   --base IMAGE        the Python base to use as it is (no pull attempt of the default)
#   --debian-base       skip the pull attempt and use the Debian-packaged base
#   --refresh-base      rebuild the Debian-packaged base even if local storage has one
# Needs root (apt-get for buildah and mmdebstrap when missing; buildah's local storage).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/image-gate:dev
RELEASE_REPOSITORY=ghcr.io/image-gate/image-gate
DEFAULT_BASE=docker.io/library/python:3.11-slim-bookworm
DEBIAN_BASE=localhost/image-gate-base:python3.11-bookworm
# The base's root filesystem is kept beside the control-plane binaries (CI caches ~/.cache/image-gate):
# a fresh machine imports it in seconds instead of running mmdebstrap again.
BASE_ROOTFS=${IMAGE_GATE_CACHE:-$HOME/.cache/image-gate}/image-base/debian-bookworm-python3.11.tar
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SIZE_GOAL_MB=150

oci_archive=""
base=""
debian_base=false
refresh_base=false
extra_tags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --oci-archive) oci_archive=$2; shift 2 ;;
    --tag) extra_tags+=("$2"); shift 2 ;;
    --base) base=$2; shift 2 ;;
    --debian-base) debian_base=true; shift ;;
    --refresh-base) refresh_base=true; debian_base=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

stamp() { date +%s; }
say() { echo "[build-image] $*"; }
start=$(stamp)

# ------------------------------------------------------------------------------------------ tools
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# --isolation chroot: no runtime (runc/crun) needed to execute RUN steps; works in containers and
# VMs where a runtime cannot set up namespaces or rlimits.
export BUILDAH_ISOLATION=chroot

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# ------------------------------------------------------------------------------------------- base
build_debian_base() {
  local ctr
  mkdir -p "$(dirname "$BASE_ROOTFS")"
  if [ "$refresh_base" = true ] || [ ! -s "$BASE_ROOTFS" ]; then
    say "building $DEBIAN_BASE from Debian bookworm packages (mmdebstrap; a few minutes)"
    # essential + python3 (3.11 in bookworm), python3-venv (ensurepip, for the builder stage),
    # CA certificates and time zones. The merged-usr hook avoids the usrmerge package (and the
    # ~45 MB of perl it pulls in); documentation, manuals and translations are not unpacked, nor
    # glibc's iconv modules (gconv, 8 MB: Python has its own codecs).
    mmdebstrap --variant=essential --format=tar \
      --include=python3,python3-venv,ca-certificates,tzdata \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
      --dpkgopt='path-exclude=/usr/lib/*/gconv/*' \
      bookworm "$BASE_ROOTFS.partial" \
      "deb $DEBIAN_MIRROR bookworm main" \
      "deb $DEBIAN_MIRROR bookworm-updates main" \
      "deb $DEBIAN_SECURITY_MIRROR bookworm-security main" \
      >"$BASE_ROOTFS.log" 2>&1 || { tail -n 40 "$BASE_ROOTFS.log" >&2; exit 1; }
    mv "$BASE_ROOTFS.partial" "$BASE_ROOTFS"
  else
    say "importing $DEBIAN_BASE from $BASE_ROOTFS (--refresh-base rebuilds it)"
  fi
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$BASE_ROOTFS" /
  buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd python3 \
    --label org.opencontainers.image.description="Debian bookworm with Python 3.11 (Debian packages), built by mmdebstrap" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "$DEBIAN_BASE" >/dev/null
}

step=$(stamp)
if [ -z "$base" ] && [ "$debian_base" = false ]; then
  if image_exists "$DEFAULT_BASE" || timeout 60 buildah pull --quiet "$DEFAULT_BASE" >/dev/null 2>&1; then
    base=$DEFAULT_BASE
  else
    say "$DEFAULT_BASE cannot be pulled here: using the Debian-packaged base"
  fi
fi
if [ -z "$base" ]; then
  base=$DEBIAN_BASE
  if [ "$refresh_base" = true ] || ! image_exists "$DEBIAN_BASE"; then
    build_debian_base
  fi
fi
say "base $base ready in $(( $(stamp) - step ))s"

# --------------------------------------------------------------------------------- pip settings
# The builder stage runs pip against the index. It gets the host's settings as build secrets
# (see the Dockerfile): mounted for that RUN step only, never in a layer. The translation of
# `pip config list` (`section.key='value'`, the environment's PIP_* as `:env:.key`) drops
# find-links (a host directory) and points `cert`, when the host sets one, at the mounted copy.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_settings=""
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  pip_settings=$(python3 -m pip config list 2>/dev/null || true)
fi
host_cert=$(sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" <<<"$pip_settings" | tail -n 1)
secrets=(--secret "id=pip.conf,src=$work/pip.conf")
{
  echo "[global]"
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    key=${line%%=*}; key=${key#*.}; value=${line#*=}; value=${value#\'}; value=${value%\'}
    case "$key" in
      cert|find-links|no-index|config-file) ;;
      *) echo "$key = $value" ;;
    esac
  done <<<"$pip_settings"
  if [ -n "$host_cert" ] && [ -f "$host_cert" ]; then
    echo "cert = /run/pip-ca.crt"
  fi
} >"$work/pip.conf"
if [ -n "$host_cert" ] && [ -f "$host_cert" ]; then
  secrets+=(--secret "id=pip-ca.crt,src=$(readlink -f "$host_cert")")
fi

# ------------------------------------------------------------------------------------------ build
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The build reads only pyproject.toml, README.md and operator/ (.dockerignore): say when they
# differ from the commit, so the revision does not claim more than it is.
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain -- pyproject.toml README.md operator 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi

step=$(stamp)
tags=(--tag "$IMAGE" --tag "$RELEASE_REPOSITORY:$version")
for tag in "${extra_tags[@]}"; do tags+=(--tag "$tag"); done
say "buildah bud: version $version, revision $revision, base $base"
# --layers: cached layers make an unchanged rebuild take seconds.
buildah bud --isolation chroot --layers --quiet \
  --build-arg "PYTHON_IMAGE=$base" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  "${secrets[@]}" \
  "${tags[@]}" \
  --file Dockerfile . >/dev/null
say "image built in $(( $(stamp) - step ))s"

# -------------------------------------------------------------------------------------- checks
# The entrypoint answers, as the image's user, and says what it is.
ctr=$(buildah from --quiet "$IMAGE")
say "$(buildah run --isolation chroot "$ctr" -- image-gate version)"
buildah rm "$ctr" >/dev/null

# Uncompressed, all layers (base included), as `buildah images` counts it: "162 MB".
size=$(buildah images --noheading --format '{{.Size}}' "$IMAGE" | sed -n 1p)  # sed reads all: head would SIGPIPE buildah (pipefail)
verdict="goal <= ${SIZE_GOAL_MB} MB"
case "$size" in
  *MB) [ "${size%%[. ]*}" -le "$SIZE_GOAL_MB" ] || verdict="OVER the goal of ${SIZE_GOAL_MB} MB" ;;
  *GB) verdict="OVER the goal of ${SIZE_GOAL_MB} MB" ;;
esac
say "size $size uncompressed ($verdict)"

if [ -n "$oci_archive" ]; then
  rm -f "$oci_archive"
  buildah push --quiet "$IMAGE" "oci-archive:$oci_archive:$RELEASE_REPOSITORY:$version"
  say "OCI archive $oci_archive ($(du -h "$oci_archive" | cut -f1))"
fi
say "done in $(( $(stamp) - start ))s: $IMAGE, $RELEASE_REPOSITORY:$version"
