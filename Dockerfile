# syntax=docker/dockerfile:1
# One image for both processes: `klaxon operator` (the default) and
# `klaxon evaluator --config NS/NAME --shard I/N` (what the operator's evaluator Deployments run).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: turn the source into a wheel, then install it into a self-contained venv ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install "build>=1.2"
COPY pyproject.toml README.md LICENSE ./
COPY operator/ ./operator/
RUN python -m build --wheel --outdir /dist .
RUN python -m venv /opt/klaxon \
 && /opt/klaxon/bin/pip install /dist/*.whl \
 && /opt/klaxon/bin/klaxon --version

# --- runtime: the venv only, no compiler, no pip cache, no source ---
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="klaxon" \
      org.opencontainers.image.description="Kubernetes operator that manages alerting as custom resources" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so that runAsNonRoot can verify it and the chart's default
# podSecurityContext (65532) matches without a lookup in /etc/passwd.
RUN groupadd --system --gid 65532 klaxon \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin klaxon
COPY --from=build /opt/klaxon /opt/klaxon
ENV PATH=/opt/klaxon/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The root filesystem is mounted read-only in the chart; nothing is written outside /tmp.
WORKDIR /tmp
USER 65532:65532
EXPOSE 8080 8081 9443
ENTRYPOINT ["klaxon"]
CMD ["operator"]
