# syntax=docker/dockerfile:1
# mlapi image for Cloud Run (or any container runtime): `make build-image`, `make run-container`.
#
# Two stages. The builder compiles uWSGI and turns every dependency into a wheel; the runtime
# stage installs those wheels with no compiler and no index, and runs as a non-root user.
#
# Models: whatever is in models/ at build time is copied in (by default the server serves
# models/latest.joblib). To change models without rebuilding, point MODEL_URI (or MODELS) at
# gs:// instead: `make deploy-model MODEL=path/to/model.joblib`.

# ---- builder: wheels for the app and all of its dependencies --------------------------------
FROM python:3.11.13-slim-bookworm AS builder

# uWSGI ships no wheels: pip compiles it from source, so this stage needs a C toolchain.
# Debian package versions are not pinned: the compiler never reaches the runtime image, and
# pinned versions break the build whenever the Debian mirror moves on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src

# Dependencies first, from the files that declare them only: this layer (and the slow uWSGI
# compile) is rebuilt when setup.py or constraints.txt change, not on every code change.
# setup.py reads README.md; without app/ it builds an empty mlapi wheel, replaced below.
COPY setup.py constraints.txt README.md ./
# The image can reach every supported store: gs:// artifacts, PostgreSQL, MySQL/MariaDB, Pub/Sub.
RUN pip wheel -c constraints.txt '.[gcs,postgres,mysql,pubsub]' -w /wheels

# Then the app itself: only this cheap step reruns when the code changes.
COPY app/ ./app/
RUN rm -f /wheels/mlapi-*.whl \
    && pip wheel --no-deps . -w /wheels

# ---- runtime: no compiler, no index, not root -------------------------------------------------
FROM python:3.11.13-slim-bookworm AS runtime

# PYTHONUNBUFFERED: log lines reach Cloud Logging at once, not when a buffer fills.
# PORT: the port the server binds; Cloud Run sets it (to 8080) itself.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080

# The wheels are bind-mounted from the builder for this one step, so they never become a layer.
# Exactly the wheels the builder made get installed: versions were fixed by constraints.txt there.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl

RUN groupadd --system --gid 10001 mlapi \
    && useradd --system --uid 10001 --gid mlapi --create-home --home-dir /home/mlapi mlapi

WORKDIR /app
# data/ is the one directory the server may write: the app's default SQLite files
# (FEATURE_STORE_URL, PREDICTIONS_DB_URL) go there. On Cloud Run it lives in memory, per
# instance, so anything that must last belongs in a real database.
RUN install -d -o 10001 -g 10001 /app/data
# Owned by root and read-only to the server: a compromised worker cannot rewrite its config or models.
COPY uwsgi.ini ./
COPY models/ ./models/

USER 10001:10001
EXPOSE 8080

# Exec form, no shell: `mlapi serve` execs uWSGI, so uWSGI is PID 1 and receives Cloud Run's
# SIGTERM itself (uwsgi.ini maps SIGTERM to a graceful stop).
CMD ["mlapi", "serve"]
