# syntax=docker/dockerfile:1
#
# image-gate: Kubernetes validating admission webhook.
#
#   docker build -t image-gate:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Stage 1 builds the wheel and installs it with its runtime dependencies into /opt/venv.
# Stage 2 is the same slim base (no compilers) with only that venv copied in, run as a
# numeric non-root user so `runAsNonRoot` can be verified by the kubelet.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ ./operator/

# Build the wheel (with build isolation: setuptools comes from the build requirements), then
# install it and its runtime dependencies into a self-contained venv. pip itself is removed
# from the venv: nothing installs packages at run time. Bytecode is compiled here, once: the
# root filesystem is read-only at run time (PYTHONDONTWRITEBYTECODE), and a webhook that starts
# fast shortens the window in which failurePolicy applies.
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /dist/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip \
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

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=builder /opt/venv /opt/venv

# 65532 is the conventional "nonroot" uid/gid (distroless); the chart runs with the same ids.
USER 65532:65532
WORKDIR /tmp

# 9443: HTTPS admission webhook. 8443: HTTPS /healthz, /readyz, /metrics.
EXPOSE 9443 8443

ENTRYPOINT ["image-gate"]
CMD ["run"]
