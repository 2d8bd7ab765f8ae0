# syntax=docker/dockerfile:1
# match-list-change-detector operator image.
#
#   docker build -t match-list-change-detector:0.1.0 .      (BuildKit, the default builder)
#
# Stage 1 builds the project's wheel and collects wheels of all its dependencies; stage 2 installs
# them offline (--no-index) from a bind mount, so no wheel, cache or build tool stays in the image.
# The image runs as UID/GID 10001 with a read-only root file system (no bytecode is written at run
# time; Kubernetes mounts an emptyDir at /tmp). Health is Kubernetes' job (liveness probe on kopf's
# /healthz), so there is no HEALTHCHECK; the service (RUN_MODE=service) answers GET /health, which a
# compose file's healthcheck polls. /app/data is the service's state directory (DATA_DIR, the old
# service's volume), owned by the image's user.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# hack/images passes a digest of the sources: buildah's layer cache was seen reusing a stale COPY
# of them (with this .dockerignore), so a new digest starts every layer below afresh.
ARG SOURCE_DIGEST=""
RUN echo "sources ${SOURCE_DIGEST}"
COPY pyproject.toml README.md ./
COPY controller ./controller
# The project's wheel plus a wheel of every dependency (all ship binary wheels: no compiler needed).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# PYTHONSAFEPATH: `python -m` must not put the working directory in front of site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PYTHONSAFEPATH=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The same digest here: a RUN that mounts the build stage is not keyed on that stage's content.
ARG SOURCE_DIGEST=""
RUN echo "sources ${SOURCE_DIGEST}"
# Install only the wheels (bytecode is compiled now, while the file system is writable), then drop
# the packaging tools: nothing installs anything at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/match_list_change_detector-*.whl \
    && pip uninstall --yes setuptools wheel pip \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /app/data
LABEL org.opencontainers.image.title="match-list-change-detector" \
      org.opencontainers.image.description="Kubernetes operator watching FOGIS referee match lists"
USER 10001:10001
# The state directory: run-once's (RUN_MODE=oneshot) relative PREVIOUS_MATCHES_FILE lands beside
# the service's.
WORKDIR /app/data
# kopf's liveness endpoint and Prometheus metrics (MLCD_HEALTH_PORT, MLCD_METRICS_PORT); the
# service's HTTP API is on 8080 too (HEALTH_SERVER_PORT).
EXPOSE 8081 8080
ENTRYPOINT ["python", "-m", "controller", "operator"]
