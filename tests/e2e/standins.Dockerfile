# syntax=docker/dockerfile:1
# The end-to-end tests' stand-ins as one image, on the same base as the operator image:
#
#   python -m tests.fakes.fogis ...       a fake FOGIS (login, match list)
#   python -m tests.fakes.receiver ...    a webhook receiver that records what it gets
#
# Both are standard-library only, so nothing is installed. Build from the repository root (the
# top-level .dockerignore keeps tests/ out, so this file brings its own ignore file):
#
#   buildah bud --ignorefile tests/e2e/standins.Dockerfile.dockerignore \
#       -f tests/e2e/standins.Dockerfile -t mlcd-standins:0.1.0 .     (hack/images standins)
#   docker build -f tests/e2e/standins.Dockerfile -t mlcd-standins:0.1.0 .   (BuildKit finds it)
#
# The pod spec picks the stand-in: `args: [tests.fakes.receiver, --host=0.0.0.0, --port=8080]`.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# `python -m tests.fakes.X` imports from the working directory.
WORKDIR /standins
# A digest of the sources from hack/images: buildah's layer cache was seen reusing a stale COPY.
ARG SOURCE_DIGEST=""
RUN echo "sources ${SOURCE_DIGEST}"
COPY tests/__init__.py ./tests/
COPY tests/fakes/ ./tests/fakes/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m"]
CMD ["tests.fakes.fogis", "--host=0.0.0.0", "--port=8080"]
