# syntax=docker/dockerfile:1
#
# image-gate: Kubernetes validating admission webhook.
#
#   docker build -t ghcr.io/image-gate/image-gate:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Without Docker (and where Docker Hub cannot be reached), scripts/build-image.sh builds this same
# file with buildah, on a Python 3.11 base made from Debian bookworm packages (PYTHON_IMAGE).
#
# Stage 1 builds the wheel and installs it with its runtime dependencies into /opt/venv.
# Stage 2 is the same slim base (no compilers, no pip) with only that venv copied in, run as a
# numeric non-root user so `runAsNonRoot` can be verified by the kubelet.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Two steps, so that a source change reuses the layer with the dependencies:
#   1. the runtime dependencies, from pyproject.toml alone (an empty package and README stand in
#      for the source, which is not copied yet);
#   2. the wheel of the source (with build isolation: setuptools comes from the build
#      requirements), installed without dependencies.
# The venv's own pip does both: `python3 -m venv` works on the official image (/usr/local/bin)
# and on Debian's python3.11 (/usr/bin, no system pip). pip and setuptools are then removed from
# the venv: nothing installs packages at run time. Bytecode is compiled here, once: the root
# filesystem is read-only at run time (PYTHONDONTWRITEBYTECODE), and a webhook that starts fast
# shortens the window in which failurePolicy applies.
#
# Mounted for these steps only, never in a layer: pip's download cache, and optional secrets for a
# private or proxied index:
#   --secret id=pip.conf,src=pip.conf   a pip config (index-url, trusted-host, cert = /run/pip-ca.crt)
#   --secret id=pip-ca.crt,src=ca.crt   the CA bundle that config's `cert` names
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=pip-ca.crt,target=/run/pip-ca.crt \
    python3 -m venv /opt/venv \
 && mkdir operator \
 && touch README.md \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes image-gate \
 && rm -rf operator README.md build

COPY README.md ./
COPY operator/ ./operator/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=pip-ca.crt,target=/run/pip-ca.crt \
    /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install --no-deps /dist/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib \
 && /opt/venv/bin/image-gate --help > /dev/null

FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="image-gate" \
      org.opencontainers.image.description="Kubernetes admission webhook: checks container images against Huawei Cloud HSS base-image facts and Alibaba Cloud ACR digests" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# IMAGE_GATE_REVISION: what `image-gate version` prints after the version (the source commit).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAGE_GATE_REVISION=${REVISION}

# The base's package installers go: nothing installs packages at run time, and a pip in the image
# is one more thing for a scanner to flag. (The official image has pip in /usr/local; Debian's
# python3-venv has the wheels ensurepip installs from.)
# The user gets a name: kopf names the operator after getpass.getuser(), which fails for a uid
# without a passwd entry. Its home is /tmp, the one writable directory.
RUN rm -rf /usr/local/bin/pip* /usr/local/lib/python3*/site-packages/pip \
           /usr/local/lib/python3*/site-packages/pip-*.dist-info \
           /usr/local/lib/python3*/ensurepip/_bundled /usr/share/python-wheels \
 && echo "nonroot:x:65532:65532:image-gate:/tmp:/usr/sbin/nologin" >> /etc/passwd \
 && echo "nonroot:x:65532:" >> /etc/group

COPY --from=builder /opt/venv /opt/venv

# 65532 is the conventional "nonroot" uid/gid (distroless); the chart runs with the same ids.
USER 65532:65532
WORKDIR /tmp

# 9443: HTTPS admission webhook. 8443: HTTPS /healthz, /readyz, /metrics.
EXPOSE 9443 8443

ENTRYPOINT ["image-gate"]
CMD ["run"]
