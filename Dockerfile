# syntax=docker/dockerfile:1
# mlapi image for Cloud Run (or any container runtime): `make build-image`, `make run-container`
# (CONTAINER_ENGINE=podman for podman). Built and run for real by tests/image/test_image.py.
#
# Two stages. The builder compiles uWSGI, turns every dependency into a wheel and installs them
# into a virtualenv, trimmed of what serving never reads (tests, pip, symbol tables); the runtime
# stage copies that virtualenv, writes the bytecode of what the app imports, installs the app's
# own wheel, and runs as a non-root user.
#
# Models: whatever is in models/ at build time is copied in (by default the server serves
# models/latest.joblib). To change models without rebuilding, point MODEL_URI (or MODELS) at
# gs:// instead: `make deploy-model MODEL=path/to/model.joblib`.

# ---- builder: wheels, and the dependencies' virtualenv -----------------------------------------
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
# A package index other than PyPI (a mirror, a proxy), when the build machine needs one:
# `make build-image` passes those set in its environment by name. Declared in this stage only,
# so they never reach the runtime image's history or environment.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
WORKDIR /src

# Dependencies first, from the files that declare them only: these layers (and the slow uWSGI
# compile) are rebuilt when setup.py or constraints.txt change, not on every code change.
# setup.py reads README.md and needs app/ to exist (setuptools stops on a missing package
# directory): from an empty one it builds an empty mlapi wheel, thrown away (the real one is built
# below, from the code).
COPY setup.py constraints.txt README.md ./
# The image reaches every supported store: gs:// artifacts, PostgreSQL, MySQL/MariaDB, Redis
# (REDIS_URL: Memorystore); and it loads .skops artifacts (extra skops, 3.5 MB: the format
# that runs no code of the file's). Not the
# pubsub extra: it is the client `mlapi publish` sends with, from a machine of yours; the service
# receives Pub/Sub's push over HTTP (and without it, gRPC and its 27 MB stay out).
RUN mkdir app \
    && pip wheel -c constraints.txt '.[gcs,postgres,mysql,skops,redis]' -w /wheels \
    && rm /wheels/mlapi-*.whl

# The virtualenv the runtime stage copies whole: what is deleted here never becomes a layer.
# Trimmed: the image's own layers went from 679 MB to 450 MB, then to 411 MB (with the standard
# library's bytecode, 6 MB, now written too; tests/image/test_image.py prints what is left):
# - no pip, setuptools or wheel (the virtualenv is made without; the base image's pip installs
#   into it): nothing installs at run time;
# - the packages' own test suites (pandas 46 MB, scipy 31 MB, numpy, scikit-learn, pyarrow):
#   only their test runners import them;
# - pyarrow's Flight RPC and S3 filesystem (libarrow_flight 32 MB, libarrow_s3 17 MB): the
#   image reads and writes files, gs:// through google-cloud-storage; pyarrow imports them only
#   when asked for (pyarrow.flight, pyarrow.fs.S3FileSystem); its libarrow_python copies become
#   links (a wheel cannot hold links). Its dataset, acero and substrait libraries stay: every
#   pyarrow module, pyarrow.lib included, is linked against them;
# - what compilers and type checkers read: Cython and C sources, headers, .pyi stubs;
# - every bytecode file pip wrote (26 MB of it for modules never imported): the runtime stage
#   writes those of what is imported;
# - the symbol tables and debug sections of the shared libraries (43 MB: pyarrow 23,
#   SQLAlchemy's debug info 8, scipy, cryptography): the loader never reads them, only a
#   debugger or a crash report's function names would. Not the libraries auditwheel rewrote
#   (those with an RPATH, and the *.libs folders it grafted in): strip breaks them (numpy's
#   OpenBLAS would not load), nor a file named *.so* that is not ELF (its first four bytes are
#   not \177ELF): strip would fail on it and stop the build. tests/image loads every shared
#   library the image holds;
# - a library two *.libs folders hold byte for byte (auditwheel names a grafted library by
#   its content's hash: scipy.libs' libgfortran and libquadmath are numpy.libs' own, 3 MB)
#   becomes a link to the first copy.
ENV SITE_PACKAGES=/opt/mlapi/lib/python3.11/site-packages
RUN python -m venv --without-pip /opt/mlapi \
    && pip --python /opt/mlapi/bin/python install --no-index --find-links=/wheels /wheels/*.whl \
    && find "$SITE_PACKAGES" -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} + \
    && find "$SITE_PACKAGES" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' \
            -o -name '*.c' -o -name '*.cpp' -o -name '*.h' \) -delete \
    && rm -rf "$SITE_PACKAGES"/pyarrow/include "$SITE_PACKAGES"/pyarrow/src "$SITE_PACKAGES"/pyarrow/*flight* \
              "$SITE_PACKAGES"/pyarrow/*s3* "$SITE_PACKAGES"/pyarrow/_pyarrow_cpp_tests.* \
    && for lib in "$SITE_PACKAGES"/pyarrow/libarrow_python*.so.*.*.*; do \
         ln -sf "$(basename "$lib")" "${lib%.*.*}" && ln -sf "$(basename "$lib")" "${lib%.*.*.*}"; done \
    && find "$SITE_PACKAGES" /opt/mlapi/bin/uwsgi -name '*.libs' -prune \
            -o -type f \( -name '*.so*' -o -name uwsgi \) -exec sh -ec \
         'for lib; do [ "$(od -An -tx1 -N4 "$lib" | tr -d " \n")" = 7f454c46 ] || continue; \
              readelf -d "$lib" | grep -q "(RPATH)" || strip --strip-unneeded "$lib"; done' sh {} + \
    && for lib in "$SITE_PACKAGES"/*.libs/*; do \
         set -- "$SITE_PACKAGES"/*.libs/"${lib##*/}"; \
         if [ "$lib" != "$1" ] && cmp -s "$lib" "$1"; then ln -sf "../${1#"$SITE_PACKAGES"/}" "$lib"; fi; done

# Then the app itself: only these cheap steps rerun when the code changes.
COPY app/ ./app/
RUN pip wheel --no-deps . -w /wheels/app

# ---- runtime: no compiler, no index, not root -------------------------------------------------
FROM python:3.11.13-slim-bookworm AS runtime

# PYTHONUNBUFFERED: log lines reach Cloud Logging at once, not when a buffer fills.
# PATH: the virtualenv's python, mlapi and the servers come first.
# PORT: the port the server binds; Cloud Run sets it (to 8080) itself.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/mlapi/bin:$PATH \
    PORT=8080

# The dependencies: one layer, unchanged (and so cached, and not pushed again) while setup.py
# and constraints.txt are.
COPY --from=builder /opt/mlapi /opt/mlapi
# Bytecode, for what is imported only, written by importing it: what the app, every
# scikit-learn estimator and bulk scoring import (a module left out is compiled when first
# imported, not missing). The server cannot write any (PYTHONDONTWRITEBYTECODE, and it is not
# root): without it, every start compiled its imports again (a cold start took 13-16 s instead
# of 4.5-6 s, measured). The standard library's too: python:slim deletes its bytecode (importing
# the app took 0.3 s more, measured). A layer of its own, cached while the dependencies are.
RUN PYTHONDONTWRITEBYTECODE='' python -c "import flask, flask_swagger_ui, werkzeug, orjson, msgspec, prometheus_client, \
         joblib, threadpoolctl, tqdm, numpy, scipy.special, pandas, sklearn.utils, pyarrow.csv, pyarrow.parquet, \
         pyarrow.compute, sqlalchemy.dialects.sqlite, sqlalchemy.dialects.postgresql.psycopg, \
         sqlalchemy.dialects.mysql.pymysql, psycopg, pymysql, granian.server, gunicorn.app.wsgiapp, \
         gunicorn.workers.sync, google.cloud.storage; sklearn.utils.all_estimators()"
# The app's wheel, bind-mounted from the builder for this one step so it never becomes a layer,
# installed with the base image's pip into the virtualenv (which has none of its own); then every
# module of the app is imported, for the bytecode of what only the app imports (all but
# mlapi.wsgi, which loads the models).
RUN --mount=type=bind,from=builder,source=/wheels/app,target=/wheels \
    pip --python /opt/mlapi/bin/python install --no-index --no-deps /wheels/mlapi-*.whl \
    && PYTHONDONTWRITEBYTECODE='' python -c "import importlib, pkgutil, mlapi; [importlib.import_module(module.name) \
         for module in pkgutil.walk_packages(mlapi.__path__, 'mlapi.') if module.name != 'mlapi.wsgi']"

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
