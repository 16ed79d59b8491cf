# syntax=docker/dockerfile:1
# lead-scorer: the daily scoring job (render.yaml: cron service lead-scorer).
#   docker build -t lead-scorer .
#   docker run --rm -e DATABASE_URL=... -e MLFLOW_TRACKING_URI=... lead-scorer              # = lead-scorer run
#   docker run --rm -e DATABASE_URL=... -e MLFLOW_TRACKING_URI=... lead-scorer run --dry-run
# Every install command lives in docker/install.sh, which tests/test_deploy.py runs into a fresh venv
# (and then runs the job from it): the image installs exactly what the test proved sufficient.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
# Behind a private package index or a TLS-intercepting proxy (docs/image.md): pip's configuration and a CA
# bundle come in as BuildKit secrets, mounted only while pip runs, so no layer and no build history keeps the
# index's credentials; a plain index URL without credentials may come as a build argument instead:
#   docker build --secret id=pip.conf,src=pip.conf --secret id=ca.pem,src=corp-ca.pem -t lead-scorer .
#   docker build --build-arg PIP_INDEX_URL=https://mirror.example/simple -t lead-scorer .
# The locks' hashes hold either way: a mirror serves the same files or the build fails.
ARG PIP_INDEX_URL
# Dependencies first, from the hashed lock: this layer is rebuilt only when the lock changes.
COPY docker/install.sh docker/install.sh
COPY requirements/prod.lock requirements/prod.lock
RUN --mount=type=secret,id=pip.conf,required=false --mount=type=secret,id=ca.pem,required=false \
    sh docker/install.sh deps /opt/venv
# Then the project itself, without dependencies (they are all in the lock).
COPY requirements/build.lock requirements/build.lock
COPY pyproject.toml README.md ./
COPY scorer scorer
COPY registry registry
COPY models models
COPY lead_errors lead_errors
RUN --mount=type=secret,id=pip.conf,required=false --mount=type=secret,id=ca.pem,required=false \
    sh docker/install.sh project /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="lead-scorer" \
      org.opencontainers.image.description="Scores leads with the production model from an MLflow registry"
RUN groupadd --system --gid 10001 scorer \
    && useradd --system --no-log-init --uid 10001 --gid scorer --create-home --home-dir /home/scorer scorer
# Only the venv: no compiler, no pip cache, no build tools, no source tree.
COPY --from=builder /opt/venv /opt/venv
# MLflow's client retries 7 times by default (~4 minutes against a server that is down); 4 retries
# with backoff 2 give up after about half a minute. Override them in render.yaml if needed.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    GIT_PYTHON_REFRESH=quiet \
    MLFLOW_HTTP_REQUEST_MAX_RETRIES=4 \
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=2 \
    MLFLOW_HTTP_REQUEST_TIMEOUT=60
USER 10001:10001
WORKDIR /home/scorer
# Exec form: lead-scorer is PID 1 and receives Render's SIGTERM itself (it finishes the current batch,
# marks the MLflow run KILLED and exits 143). It starts no child processes, so no init is needed.
ENTRYPOINT ["lead-scorer"]
CMD ["run"]
