# mlapi: serve scikit-learn models with Flask + uWSGI, locally, in Docker and on Cloud Run.
#
# `make` (or `make help`) lists every target. A setting comes from, strongest first:
# the command line (`make deploy CLOUD_RUN_MAX_INSTANCES=5`), .env (copy example.env),
# the environment, then the defaults below. Write .env as plain KEY=value lines: no quotes,
# comments on lines of their own, and `\#` for a literal `#` (make reads the rest of a line
# after `#` as a comment).

# ---- settings ------------------------------------------------------------------------------
MAKEFILE := $(abspath $(lastword $(MAKEFILE_LIST)))
ENV_FILE ?= .env
-include $(ENV_FILE)
# Hand the variables .env sets to the commands below: `make run` serves with its MODELS, PORT, ...
ENV_FILE_VARIABLES := $(shell sed -n -E 's/^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*[:?+]?=.*/\2/p' $(ENV_FILE) 2>/dev/null)
ifneq ($(strip $(ENV_FILE_VARIABLES)),)
export $(ENV_FILE_VARIABLES)
endif

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Local development
VENV ?= .venv
ifndef PYTHON
PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
endif
# The port on this machine: `make run` serves on it, `make run-container` publishes the container's 8080 on it.
PORT ?= 8080
# make docs: the port the documentation site is served on (mkdocs serve)
DOCS_PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=
# make postman: its server's port (empty: a free one) and where to keep newman's JSON report (empty: nowhere)
POSTMAN_PORT ?=
POSTMAN_REPORT ?=
# make bench-peers: the systems (see bench/peers/README.md) and rounds, interleaved
# (empty, as in example.env, means these defaults; a variable, because $(or) splits at commas).
# MLAPI_BEFORE_CHECKOUT, a second checkout (an older commit, with its own .venv), adds the same
# two mlapi systems served from there: mlapi_before and mlapi_batch_before.
ifneq ($(strip $(MLAPI_BEFORE_CHECKOUT)),)
DEFAULT_PEER_SYSTEMS := mlapi,mlapi_before,mlapi_batch,mlapi_batch_before,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop
else
DEFAULT_PEER_SYSTEMS := mlapi,mlapi_batch,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop
endif
PEER_SYSTEMS := $(or $(PEER_SYSTEMS),$(DEFAULT_PEER_SYSTEMS))
PEER_ROUNDS := $(or $(PEER_ROUNDS),3)

# Google Cloud: project, region and the two service accounts (deployer, and the service's runtime identity)
GCP_PROJECT_ID ?=
GCP_REGION ?= europe-west1
GCP_SERVICE_ACCOUNT_NAME ?= machine-learning-api
# How you act as the deployer. impersonate (the default): your own gcloud login asks the IAM
# Credentials API for short-lived deployer tokens; no key exists (many organisations forbid
# creating one). key: a JSON key in GCP_KEY_FILE (make create-key), where impersonation is impossible.
DEPLOY_AUTH ?= impersonate
# Who may impersonate the deployer (add-roles grants roles/iam.serviceAccountTokenCreator on the
# deployer only): user:alice@example.com, group:..., serviceAccount:...; empty: the account gcloud uses then.
DEPLOYER_IMPERSONATOR ?=
GCP_KEY_FILE ?= secrets/gcp-key.json
GCLOUD_CONFIGURATION ?= $(GCP_SERVICE_ACCOUNT_NAME)
DEPLOYER_EMAIL = $(GCP_SERVICE_ACCOUNT_NAME)@$(GCP_PROJECT_ID).iam.gserviceaccount.com
RUNTIME_SERVICE_ACCOUNT_NAME = $(GCP_SERVICE_ACCOUNT_NAME)-runtime
RUNTIME_EMAIL = $(RUNTIME_SERVICE_ACCOUNT_NAME)@$(GCP_PROJECT_ID).iam.gserviceaccount.com

# Image (built locally, pushed to Artifact Registry) and Cloud Run service, both named DOCKER_PROJECT
DOCKER_PROJECT ?= mlapi
# What builds and runs the image locally (build-image, run-container): docker, or podman, which
# takes the same commands (CONTAINER_ENGINE=podman in .env or on the command line).
CONTAINER_ENGINE ?= docker
# pip's index settings, when the builder must reach a mirror or proxy rather than PyPI: passed by
# name (--build-arg=NAME, its value read from the environment) to the builder stage only, so they
# are neither on the command line nor in the image.
PIP_BUILD_ARGS = $(foreach v,PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST,$(if $(strip $($(v))),--build-arg=$(v)))
ARTIFACT_REPOSITORY ?= mlapi
ifndef GIT_SHA
GIT_SHA := $(shell git rev-parse --short HEAD 2>/dev/null)
endif
# Empty (as in example.env) means the current commit.
IMAGE_TAG := $(or $(IMAGE_TAG),$(GIT_SHA))
LOCAL_IMAGE = $(DOCKER_PROJECT):$(IMAGE_TAG)
REGISTRY = $(GCP_REGION)-docker.pkg.dev
IMAGE = $(REGISTRY)/$(GCP_PROJECT_ID)/$(ARTIFACT_REPOSITORY)/$(DOCKER_PROJECT):$(IMAGE_TAG)

# Models on Cloud Storage (upload-model, deploy-model)
MODEL_BUCKET ?=
MODEL ?=

# Cloud Run
CLOUD_RUN_MEMORY ?= 1Gi
CLOUD_RUN_CPU ?= 1
# Requests in flight per instance; empty: what the server holds at once, workers × threads (below).
CLOUD_RUN_CONCURRENCY ?=
# gen2: a microVM with full Linux (cgroups, so the server sees its CPU quota; Cloud Storage volume
# mounts), faster CPU for CPU-bound predictions; gen1's faster sandbox start matters less than model
# loading here. docs/deploy.md says more.
CLOUD_RUN_EXECUTION_ENVIRONMENT ?= gen2
# More CPU while an instance starts: imports and model loading are CPU-bound and the startup
# probe waits for them. false: --no-cpu-boost.
CLOUD_RUN_CPU_BOOST ?= true
CLOUD_RUN_MIN_INSTANCES ?= 0
CLOUD_RUN_MAX_INSTANCES ?= 3
CLOUD_RUN_INGRESS ?= all
CLOUD_RUN_ALLOW_UNAUTHENTICATED ?= false
CANARY_PERCENT ?= 10
REVISION ?=

# Secrets (docs/security.md, "Secrets"): a setting that is a secret never reaches Cloud Run as a plain
# variable (anyone who may describe the service reads those) nor a command line (process lists, shell
# history). make create-secrets stores each one set in Secret Manager as <DOCKER_PROJECT>-<name>
# (NAME_SECRET=other-name names another, and lets you deploy without holding the value); make deploy
# passes it with --set-secrets, pinned to the secret's newest enabled version.
SECRET_SETTINGS = API_KEYS ADMIN_TOKEN METRICS_TOKEN API_DOCS_TOKEN
# Secrets only when they hold a password (user:password@host, or a password= parameter).
CREDENTIAL_URL_SETTINGS = FEATURE_STORE_URL FEATURE_STORE_WRITE_URL PREDICTIONS_DB_URL SOURCE_DB_URL REDIS_URL
# Paths of files holding secrets: the file's content is stored, and Cloud Run mounts it at
# /secrets/<name>/value, the path the setting then holds.
SECRET_FILE_SETTINGS = API_KEYS_FILE API_DOCS_TOKEN_FILE ADMIN_TOKEN_FILE

# Memorystore for Redis (make create-redis): the REDIS_URL every instance shares (prediction cache,
# rate limits, call log, reload). basic: one node, emptied by a restart or maintenance (a cache and
# rate-limit counters survive that); standard: a replica and failover, about twice the price.
# Full memory evicts the least recently used keys that expire (volatile-lru, set explicitly): idle
# cache entries and call logs before a busy caller's rate counters (docs/deploy.md, Memorystore).
REDIS_INSTANCE ?= $(DOCKER_PROJECT)
REDIS_TIER ?= basic
REDIS_SIZE_GB ?= 1
REDIS_VERSION ?= redis_7_2
# Direct VPC egress: the network and subnet (in GCP_REGION) the service sends private addresses to;
# Memorystore has nothing else. Empty: "default" when REDIS_URL (or REDIS_URL_SECRET) is set, else
# none (--clear-network). VPC_NETWORK is also the network make create-redis puts the instance on.
VPC_NETWORK ?=
VPC_SUBNET ?=

# Batch inference (docs: README, "Batch inference on Google Cloud"). Pub/Sub pushes each request
# to the service's /pubsub/push, as its own service account (<name>-pubsub) that may invoke this
# one service; messages still failing after MAX_DELIVERY_ATTEMPTS go to <topic>-dead-letter.
PUBSUB_TOPIC ?= mlapi-batch-requests
PUBSUB_SUBSCRIPTION ?= $(PUBSUB_TOPIC)-push
DEAD_LETTER_TOPIC = $(PUBSUB_TOPIC)-dead-letter
# Keeps dead letters (a topic without a subscription drops what is published to it).
DEAD_LETTER_SUBSCRIPTION = $(DEAD_LETTER_TOPIC)-pull
DEAD_LETTER_RETENTION ?= 31d
# Empty: asked of Cloud Run (gcloud run services describe) and of the project (gcloud projects describe).
SERVICE_URL ?=
GCP_PROJECT_NUMBER ?=
# Empty: REQUEST_TIMEOUT's reply window (CLOUD_RUN_TIMEOUT), within Pub/Sub's 10-600 s.
ACK_DEADLINE ?=
MAX_DELIVERY_ATTEMPTS ?= 10
MIN_RETRY_DELAY ?= 10s
MAX_RETRY_DELAY ?= 600s
PUBSUB_INVOKER_NAME = $(GCP_SERVICE_ACCOUNT_NAME)-pubsub
PUBSUB_INVOKER_EMAIL = $(PUBSUB_INVOKER_NAME)@$(GCP_PROJECT_ID).iam.gserviceaccount.com

# The Cloud Run Job scoring the whole feature store into the predictions table, in BATCH_TASKS shards.
BATCH_JOB_NAME ?= $(DOCKER_PROJECT)-batch
BATCH_MODEL ?=
BATCH_TASKS ?= 4
BATCH_PARALLELISM ?= 0
BATCH_MAX_RETRIES ?= 3
BATCH_TASK_TIMEOUT ?= 3600s
BATCH_MEMORY ?= 2Gi
BATCH_CPU ?= 2

# Server settings that travel with the container (run-container, deploy, deploy-batch-job). Not PORT (the
# container listens on 8080; Cloud Run sets PORT itself), not MODEL_CACHE_DIR (a local path),
# not GOOGLE_APPLICATION_CREDENTIALS (Cloud Run runs as the runtime service account).
SERVER_SETTINGS = MODELS MODEL_URI MODEL_NAME MODEL_SHA256 STRICT_SKLEARN_VERSION SERVER_PYARROW COMPILED_PATH \
                  MAX_REQUEST_BYTES PREDICTION_CACHE_SIZE LOG_LEVEL \
                  FEATURE_TABLE FEATURE_ID_COLUMN FEATURE_TEXT_COLUMN FEATURE_STORE_URL \
                  FEATURE_STORE_WRITE_URL PREDICTIONS_DB_URL SOURCE_DB_URL SOURCE_TABLE \
                  LOG_FORMAT ACCESS_LOG GOOGLE_CLOUD_PROJECT MAX_BATCH_SIZE MAX_BATCH_WAIT_MS API_DOCS \
                  SERVER WEB_CONCURRENCY UWSGI_THREADS GUNICORN_THREADS GRANIAN_BLOCKING_THREADS \
                  MAX_ROWS REQUEST_TIMEOUT ENVIRONMENT PUSH_AUTH PUSH_AUDIENCE PUSH_SERVICE_ACCOUNT \
                  REDIS_URL REDIS_TIMEOUT_MS RATE_LIMIT TRUSTED_PROXY_HOPS SKOPS_TRUSTED_TYPES \
                  CACHE_TTL_SECONDS CACHE_ROUTES CALL_LOG_TTL CALL_LOG_SIZE CALL_LOG_INPUT_CHARS CALL_LOG_BATCH_MS
empty :=
space := $(empty) $(empty)
comma := ,
# Which settings travel through Secret Manager, under which secret, and where a file secret is mounted.
# Only names pass through the shell here, never a value.
lowercase = $(shell printf '%s' '$(1)' | tr 'A-Z_' 'a-z-')
holds_password = $(or $(findstring password=,$(1)),$(if $(findstring @,$(1)),$(findstring :,$(firstword \
  $(subst @, ,$(lastword $(subst ://, ,$(1))))))))
is_secret = $(strip $(or $($(1)_SECRET),$(if $(filter $(1),$(CREDENTIAL_URL_SETTINGS)),$(call holds_password,$($(1))),$($(1)))))
SECRETS_SENT = $(foreach v,$(SECRET_SETTINGS) $(CREDENTIAL_URL_SETTINGS) $(SECRET_FILE_SETTINGS),$(if $(call is_secret,$(v)),$(v)))
# Those whose value (or file) is here, for make create-secrets and run-container.
SECRETS_HELD = $(foreach v,$(SECRETS_SENT),$(if $(strip $($(v))),$(v)))
secret_name = $(or $(strip $($(1)_SECRET)),$(DOCKER_PROJECT)-$(call lowercase,$(1)))
secret_mount = /secrets/$(call lowercase,$(1))/value
PLAIN_SETTINGS = $(filter-out $(SECRETS_SENT),$(SERVER_SETTINGS))
MOUNTED_ENV = $(foreach v,$(filter $(SECRET_FILE_SETTINGS),$(SECRETS_SENT)),$(v)=$(call secret_mount,$(v)))
# --set-secrets, not --update-secrets, as for the variables below: a secret removed from .env leaves
# the service too. Versions are pinned (SECRET_VERSION_<setting>, set by pin_secret_versions): Cloud
# Run reads a secret variable when an instance starts, so with :latest the instances of one revision
# could disagree after a rotation (one accepting an API key another refuses) and a rollback would not
# bring the old value back; Google recommends pinning for exactly this (docs/security.md).
secret_ref = $(if $(filter $(SECRET_FILE_SETTINGS),$(1)),$(call secret_mount,$(1)),$(1))=$(call secret_name,$(1)):$(SECRET_VERSION_$(1))
SECRETS_FLAG = $(if $(strip $(SECRETS_SENT)),--set-secrets=$(subst $(space),$(comma),$(strip \
  $(foreach v,$(SECRETS_SENT),$(call secret_ref,$(v))))),--clear-secrets)
# As a recipe's line, after its require: the newest enabled version of each secret the flags name.
define pin_secret_versions
$(foreach v,$(SECRETS_SENT),$(eval SECRET_VERSION_$(v) := $(shell gcloud secrets versions list $(call secret_name,$(v)) \
  --project=$(GCP_PROJECT_ID) --filter=state:enabled --sort-by=~createTime --limit=1 --format='value(name.basename())' \
  2>/dev/null))$(if $(SECRET_VERSION_$(v)),,$(error $(v) reaches Cloud Run through Secret Manager, but the secret \
  $(call secret_name,$(v)) has no enabled version you may see: run make create-secrets (as your own account) first)))
endef
SERVER_ENV = $(strip $(foreach v,$(PLAIN_SETTINGS),$(if $($(v)),$(v)=$($(v)))) $(MOUNTED_ENV))
# Direct VPC egress to reach Memorystore's private address; without it, --clear-network (the same
# whole truth as the variables: a network removed from .env leaves the service).
EGRESS_NETWORK = $(or $(strip $(VPC_NETWORK)),$(if $(strip $(REDIS_URL)$(REDIS_URL_SECRET)),default))
NETWORK_FLAGS = $(if $(EGRESS_NETWORK),--network=$(EGRESS_NETWORK) --subnet=$(or $(strip $(VPC_SUBNET)),$(EGRESS_NETWORK)) \
  --vpc-egress=private-ranges-only,--clear-network)
# gcloud splits --set-env-vars on commas, and MODELS holds commas: `^|^` makes `|` the separator.
# --set-env-vars, not --update-env-vars: .env is the whole truth, so a setting removed from .env
# leaves the service too (--update-env-vars would keep every value ever deployed, unseen in .env).
env_vars_flag = $(if $(1),--set-env-vars='^|^$(subst $(space),|,$(1))',--clear-env-vars)
ENV_VARS_FLAG = $(call env_vars_flag,$(SERVER_ENV))

# The worker model, as `mlapi serve` decides it (app/server/launch.py), so that Cloud Run sends an
# instance as many requests as it can hold at once. One worker per vCPU of the instance: sent as
# WEB_CONCURRENCY, because the CPUs a process sees (and the quota, raised while CPU boost lasts)
# are not the instance's steady share.
BATCHING = $(filter-out 0 1,$(strip $(MAX_BATCH_SIZE)))
SERVE_WITH = $(or $(strip $(SERVER)),$(if $(BATCHING),granian,uwsgi))
# app/server/launch.py BATCHING_THREADS: request threads per worker with micro-batching (a test keeps them equal)
BATCHING_THREADS = 32
THREADS_SETTING = $(strip $($(if $(filter gunicorn,$(SERVE_WITH)),GUNICORN_THREADS,$(if $(filter granian,$(SERVE_WITH)),GRANIAN_BLOCKING_THREADS,UWSGI_THREADS))))
SERVE_THREADS = $(or $(THREADS_SETTING),$(if $(BATCHING),$(BATCHING_THREADS),1))
# CLOUD_RUN_CPU rounded up (0.5 → 1, 1000m → 1, 2 → 2).
SERVE_WORKERS = $(or $(strip $(WEB_CONCURRENCY)),$(shell awk 'BEGIN { c = "$(CLOUD_RUN_CPU)"; \
  if (c ~ /m$$/) { sub(/m$$/, "", c); c = c / 1000 } n = int(c); if (n < c) n++; print (n < 1 ? 1 : n) }'))
# Cloud Run allows 1 to 1000.
CLOUD_RUN_REQUESTS = $(or $(strip $(CLOUD_RUN_CONCURRENCY)),$(shell n=$$(( $(SERVE_WORKERS) * $(SERVE_THREADS) )); \
  echo $$(( n > 1000 ? 1000 : n ))))
# Cloud Run's request timeout: REQUEST_TIMEOUT (the server's, default 60 s) and 5 s for its JSON 504 to reach
# the caller; Cloud Run cutting first would leave the caller with its own bare 504.
REQUEST_SECONDS = $(or $(strip $(REQUEST_TIMEOUT)),60)
CLOUD_RUN_TIMEOUT = $(shell n=$$(( $(REQUEST_SECONDS) + 5 )); echo $$(( n > 3600 ? 3600 : n )))
# A push's ack deadline is also its request timeout: Pub/Sub must wait as long as Cloud Run does.
PUSH_ACK_DEADLINE = $(or $(strip $(ACK_DEADLINE)),$(shell n=$(CLOUD_RUN_TIMEOUT); echo $$(( n > 600 ? 600 : n < 10 ? 10 : n ))))
# What the service gets beyond .env: the worker count above, and the account and audience of the
# push token /pubsub/push accepts (PUSH_AUTH is on by default on Cloud Run; make
# create-pubsub-invoker makes the account).
SERVICE_DEFAULT_WEB_CONCURRENCY = $(SERVE_WORKERS)
SERVICE_DEFAULT_PUSH_SERVICE_ACCOUNT = $(PUBSUB_INVOKER_EMAIL)
# Cloud Run's front end appends the client's address to X-Forwarded-For: one hop to trust.
SERVICE_DEFAULT_TRUSTED_PROXY_HOPS = 1
# The push token's audience: one value that make deploy (PUSH_AUDIENCE, and a custom audience
# Cloud Run's IAM accepts beside the service URL) and make create-push-subscription
# (--push-auth-token-audience) both know before the service exists, so the app never derives it
# from a request's Host. A URI (https://...) or a plain string (a JWT audience holding ':' must be a
# URI); a ',' or '|' is refused: gcloud splits on them.
SERVICE_DEFAULT_PUSH_AUDIENCE = $(GCP_PROJECT_ID)/$(GCP_REGION)/$(DOCKER_PROJECT)/pubsub/push
service_value = $(or $($(1)),$(SERVICE_DEFAULT_$(1)))
PUSH_TOKEN_AUDIENCE = $(strip $(call service_value,PUSH_AUDIENCE))
# gcloud splits a list flag at ',' and the env-vars flag here at '|': either would cut the audience in two.
check_push_audience = $(if $(findstring $(comma),$(PUSH_TOKEN_AUDIENCE))$(findstring |,$(PUSH_TOKEN_AUDIENCE)),\
  $(error PUSH_AUDIENCE=$(PUSH_TOKEN_AUDIENCE) holds ',' or '|': choose an audience without them))
SERVICE_ENV = $(strip $(foreach v,$(PLAIN_SETTINGS),$(if $(call service_value,$(v)),$(v)=$(call service_value,$(v)))) \
  $(MOUNTED_ENV))
# Probes. Startup: a revision takes requests only once GET /startupz says every model loaded (not
# /readyz: a database outage must not stop instances from starting), polled every 2 s for up to
# 240 s (Cloud Run's limit); a model that fails to load fails the deploy instead of serving 503s.
# Liveness: GET /healthz every 30 s; the instance restarts after failures spanning more than
# REQUEST_TIMEOUT, so workers busy with slow requests are not taken for dead.
STARTUP_PROBE = httpGet.path=/startupz,httpGet.port=8080,periodSeconds=2,timeoutSeconds=2,failureThreshold=120
LIVENESS_PROBE = httpGet.path=/healthz,httpGet.port=8080,periodSeconds=30,timeoutSeconds=5,failureThreshold=$(shell \
  echo $$(( $(REQUEST_SECONDS) / 30 + 2 )))
# Private unless asked otherwise: callers need roles/run.invoker and an identity token.
AUTH_FLAG = $(if $(filter true,$(CLOUD_RUN_ALLOW_UNAUTHENTICATED)),--allow-unauthenticated,--no-allow-unauthenticated)
SERVICE_FLAGS = --region=$(GCP_REGION) --project=$(GCP_PROJECT_ID)
DEPLOY_FLAGS = --image=$(IMAGE) $(SERVICE_FLAGS) --service-account=$(RUNTIME_EMAIL) \
               --memory=$(CLOUD_RUN_MEMORY) --cpu=$(CLOUD_RUN_CPU) --concurrency=$(CLOUD_RUN_REQUESTS) \
               --timeout=$(CLOUD_RUN_TIMEOUT) --execution-environment=$(CLOUD_RUN_EXECUTION_ENVIRONMENT) \
               $(if $(filter true,$(CLOUD_RUN_CPU_BOOST)),--cpu-boost,--no-cpu-boost) \
               --startup-probe=$(STARTUP_PROBE) --liveness-probe=$(LIVENESS_PROBE) \
               --min-instances=$(CLOUD_RUN_MIN_INSTANCES) --max-instances=$(CLOUD_RUN_MAX_INSTANCES) \
               --ingress=$(CLOUD_RUN_INGRESS) --port=8080 $(AUTH_FLAG) $(call env_vars_flag,$(SERVICE_ENV)) \
               --add-custom-audiences='$(PUSH_TOKEN_AUDIENCE)' $(SECRETS_FLAG) $(NETWORK_FLAGS)
# $(call whole_numbers,VAR ...) as a recipe's first line: the settings the flags above compute with.
whole_numbers = $(foreach v,$(1),$(if $(strip $($(v))),$(if $(shell [[ '$(strip $($(v)))' =~ ^[1-9][0-9]*$$ ]] && echo y),,\
  $(error $(v)=$(strip $($(v))) is not a whole number above 0))))
DEPLOY_NUMBERS = WEB_CONCURRENCY UWSGI_THREADS GUNICORN_THREADS GRANIAN_BLOCKING_THREADS REQUEST_TIMEOUT CLOUD_RUN_CONCURRENCY
# `mlapi batch-predict` shards itself by CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT, which Cloud Run sets.
BATCH_ARGS = batch-predict,--from-store,--to-db$(if $(strip $(BATCH_MODEL)),$(comma)--model=$(strip $(BATCH_MODEL)))

# $(call require,VAR ...) as a recipe's first line: stop before running anything when a variable is empty.
require = $(foreach v,$(1),$(if $(strip $($(v))),,$(error $(v) is not set: add $(v)=... to .env (see example.env) or run `make $@ $(v)=...`)))
check_deploy_auth = $(if $(filter impersonate key,$(DEPLOY_AUTH)),,$(error DEPLOY_AUTH is '$(DEPLOY_AUTH)': use impersonate (the default) or key))
# A service account name derived from GCP_SERVICE_ACCOUNT_NAME must fit IAM's 30 characters.
check_account_name = @name='$(1)'; if [ $${\#name} -gt 30 ]; then \
	  echo "error: GCP_SERVICE_ACCOUNT_NAME is too long: $$name must be at most 30 characters" >&2; exit 1; fi

.PHONY: help venv install install-dev demo run card test docs bench bench-peers node-deps \
        build-image run-container \
        check-gcp-login enable-apis create-service-account create-repository create-bucket add-roles \
        create-key create-config create-secrets create-redis \
        conf-docker-for-gcp image-to-gcp deploy list-cloud-run describe-service list-revisions \
        upload-model deploy-model deploy-canary promote rollback \
        add-data-point import-data-to-fs \
        create-topic create-pubsub-invoker create-push-subscription deploy-batch-job run-batch-job \
        delete-deployment delete-latest-gcp-image

##@ Help
help: ## list the targets (the default goal)
	@awk 'BEGIN {FS = ":.*## "} \
	     /^##@ / {printf "\n%s\n", substr($$0, 5)} \
	     /^[a-z][a-z0-9-]*:.*## / {printf "  %-26s %s\n", $$1, $$2}' $(MAKEFILE)
	@echo
	@echo "Settings now (from the command line, $(ENV_FILE), the environment or defaults; see example.env):"
	@echo "  GCP_PROJECT_ID=$(GCP_PROJECT_ID) GCP_REGION=$(GCP_REGION) GCP_SERVICE_ACCOUNT_NAME=$(GCP_SERVICE_ACCOUNT_NAME)"
	@echo "  IMAGE=$(if $(GCP_PROJECT_ID),$(IMAGE),$(LOCAL_IMAGE) (the registry path needs GCP_PROJECT_ID))"

##@ Local development
venv: $(VENV)/bin/python ## create the virtualenv (VENV, default .venv) with python3.11, else python3

$(VENV)/bin/python:
	$(call require,PYTHON)
	@echo "first run: creating the virtualenv $(VENV), then installing mlapi into it (about 2 minutes)"
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when the dependency declarations change.
$(VENV)/.installed-gcs: $(VENV)/bin/python setup.py constraints.txt
	@echo "installing mlapi and its dependencies into $(VENV) (about 2 minutes the first time)"
	$(VENV)/bin/python -m pip install -c constraints.txt -e '.[gcs]'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python setup.py constraints.txt
	@echo "installing mlapi, its dependencies and the test tools into $(VENV) (a few minutes the first time)"
	$(VENV)/bin/python -m pip install -c constraints.txt -e '.[dev]'
	@touch $@ $(VENV)/.installed-gcs

install: $(VENV)/.installed-gcs ## install the server into the virtualenv, with Cloud Storage support

install-dev: $(VENV)/.installed-dev ## install the server and every test tool into the virtualenv

demo: $(VENV)/.installed-gcs ## train the demo models into models/ (skips those already there)
	$(VENV)/bin/mlapi demo --out models

# Serve (and show the cards of) both demo models unless .env (or the environment) says what to serve.
run card: export MODELS ?= $(if $(MODEL_URI),,iris=models/iris.joblib,tickets=models/tickets.joblib)
run: demo ## serve with uWSGI on :8080 (PORT), as in production; MODELS defaults to the demo models
	$(VENV)/bin/mlapi serve --server uwsgi --port $(PORT)

# CARD_MODEL=name or name:version picks one model; unset, every one MODELS lists.
card: demo ## show the cards of the models MODELS names, loaded from their files (no server): features and their types, classes, sha256, compute path (CARD_MODEL=name[:version])
	$(VENV)/bin/mlapi card $(if $(strip $(CARD_MODEL)),'$(strip $(CARD_MODEL))')

# The tests see the environment make was called with, not .env: a MODELS or PORT meant for
# `make run` must not leak into the servers the tests start.
test: $(VENV)/.installed-dev node-deps ## run the test suite (PYTEST_ARGS=... passes options to pytest)
	@echo "$(VENV)/bin/python -m pytest -q tests $(PYTEST_ARGS)"
	@env $(addprefix -u ,$(ENV_FILE_VARIABLES)) $(VENV)/bin/python -m pytest -q tests $(PYTEST_ARGS)

# The site in docs/ (mkdocs.yml), rebuilt and reloaded in the browser on every save; `make test`
# builds it with --strict (tests/docs/test_site.py).
docs: $(VENV)/.installed-dev ## serve the documentation site (docs/) on http://localhost:8000 (DOCS_PORT), reloaded on save
	$(VENV)/bin/mkdocs serve --dev-addr localhost:$(DOCS_PORT)

# The shortcuts (app/serving/shortcuts/) know scikit-learn's private modules: run
# their tests, and the loading tests, on the oldest and on the newest scikit-learn setup.py allows,
# each with the numpy / scipy / pandas / pyarrow of its time, in throwaway virtualenvs (reused when
# present). pyarrow (bulk scoring's reader) 26 refuses numpy 1.x at import: the oldest end takes
# setup.py's floor, 15.0.2.
SKLEARN_OLDEST = scikit-learn==1.4.0 numpy==1.24.4 scipy==1.10.1 pandas==2.0.3 pyarrow==15.0.2
SKLEARN_NEWEST = scikit-learn numpy scipy pandas pyarrow
SKLEARN_RANGE_DIR = /tmp/mlapi-sklearn-range
SKLEARN_RANGE_DEPS = flask orjson msgspec prometheus-client SQLAlchemy tqdm requests pytest joblib threadpoolctl redis
# Not the skops tests: skops needs numpy >= 1.25, which the oldest end cannot install (and it is
# loading, not the shortcuts).
SKLEARN_RANGE_TESTS = tests/serving --ignore=tests/serving/test_storage.py --ignore=tests/serving/test_batching.py \
                      --ignore=tests/serving/test_skops.py --ignore=tests/serving/test_skops_storage.py
.PHONY: test-sklearn-range
test-sklearn-range: ## run the model and shortcut tests on the oldest and the newest scikit-learn allowed
	@for end in oldest newest; do \
	  if [ $$end = oldest ]; then pins='$(SKLEARN_OLDEST)'; else pins='$(SKLEARN_NEWEST)'; fi; \
	  venv='$(SKLEARN_RANGE_DIR)'/$$end; \
	  [ -x $$venv/bin/python ] || $(PYTHON) -m venv $$venv; \
	  grep -viE '^(numpy|scipy|pandas|scikit-learn|pyarrow)==' constraints.txt > $$venv/constraints.txt; \
	  $$venv/bin/python -m pip install -q --upgrade -c $$venv/constraints.txt $$pins $(SKLEARN_RANGE_DEPS); \
	  $$venv/bin/python -m pip install -q --no-deps -e .; \
	  $$venv/bin/python -c 'import numpy, pandas, sklearn; print("'$$end':", "scikit-learn", sklearn.__version__, "numpy", numpy.__version__, "pandas", pandas.__version__)'; \
	  env $(addprefix -u ,$(ENV_FILE_VARIABLES)) $$venv/bin/python -m pytest -q -p no:cacheprovider $(SKLEARN_RANGE_TESTS); \
	done

bench: $(VENV)/.installed-dev ## measure: serving cells vs floors (wrk), predict-by-id overhead, bulk scoring, cache/Redis/keys+limits (needs Redis); results in bench/results/
	$(VENV)/bin/python bench/serve_bench.py $(BENCH_ARGS)
	$(VENV)/bin/python bench/entity_bench.py
	$(VENV)/bin/python bench/bulk_bench.py
	$(VENV)/bin/python bench/fleet_bench.py

bench-peers: $(VENV)/.installed-dev ## mlapi (with and without batching) against MLflow, MLServer, BentoML, a minimal Flask+uWSGI handler and its no-op route; MLAPI_BEFORE_CHECKOUT=dir adds mlapi as served from that checkout
	mkdir -p bench/results  # git-ignored, so absent from a fresh clone; the peer script writes into it
	ANCHORS_PROFILE=mlapi ANCHORS_SYSTEMS=$(PEER_SYSTEMS) ANCHORS_ROUNDS=$(PEER_ROUNDS) \
	  ANCHORS_OUT=$(CURDIR)/bench/results/peers.json MLAPI_CHECKOUT=$(CURDIR) \
	  $(if $(strip $(MLAPI_BEFORE_CHECKOUT)),MLAPI_BEFORE_CHECKOUT='$(abspath $(strip $(MLAPI_BEFORE_CHECKOUT)))' )bench/peers/run.sh
	$(VENV)/bin/python bench/peers_report.py bench/results/peers.json

node-deps: ## install newman (Postman collection runner) with npm ci, when package.json and npm exist
	@if [ ! -f package.json ]; then exit 0; fi; \
	if ! command -v npm >/dev/null 2>&1; then \
	  echo "npm not found: skipping newman; the Postman collection test skips (fails under CI=true)"; exit 0; fi; \
	if [ node_modules/.package-lock.json -nt package-lock.json ]; then exit 0; fi; \
	echo "npm ci"; npm ci --no-audit --no-fund

##@ Postman collection (mlapi.postman_collection.json, run by newman)
# The records its "Feature store and batch (Pub/Sub)" folder reads: text records 1-3 for the
# tickets model and iris-1 (setosa's measurements) for iris. Their ids are fixed, so adding
# them again replaces them rather than piling up copies.
define POSTMAN_RECORDS
{"id": "1", "text": "I was charged twice for my plan"}
{"id": "2", "text": "the app crashes when I open the camera screen"}
{"id": "3", "text": "I cannot log in to my account"}
{"id": "iris-1", "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
endef
postman postman-records: export POSTMAN_RECORDS_JSONL = $(POSTMAN_RECORDS)
# The collection's 413 request sends a body just over the server's limit: a small limit keeps it quick.
POSTMAN_MAX_REQUEST_BYTES = 65536
.PHONY: postman postman-records

# Its own server, so nothing from .env or the shell (MODELS, METRICS_TOKEN, FEATURE_TABLE, ...)
# changes what the collection expects: `env -i` and the settings below, all files in a scratch
# directory that is removed, with the server, however the run ends.
postman: demo node-deps ## run the Postman collection with newman against its own server (demo models, a scratch store); POSTMAN_PORT, POSTMAN_REPORT
	@if ! command -v node >/dev/null || [ ! -x node_modules/.bin/newman ]; then \
	  echo "error: make postman runs the collection with newman, which needs Node.js and npm (e.g. apt-get install nodejs npm); then run make postman again" >&2; exit 1; fi
	@command -v curl >/dev/null || { echo "error: make postman needs curl to wait for its server" >&2; exit 1; }
	@scratch="$$(mktemp -d)"; server=; \
	stop() { if [ -n "$$server" ]; then kill -TERM "$$server" 2>/dev/null && wait "$$server" 2>/dev/null || true; fi; rm -rf "$$scratch"; }; \
	trap stop EXIT; trap 'exit 130' INT TERM; \
	port='$(POSTMAN_PORT)'; \
	[ -n "$$port" ] || port="$$($(VENV)/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"; \
	report='$(POSTMAN_REPORT)'; report="$${report:-$$scratch/newman.json}"; \
	settings=(PATH="$$PATH" HOME="$$HOME" LOG_FORMAT=text MAX_REQUEST_BYTES=$(POSTMAN_MAX_REQUEST_BYTES) \
	  MODELS=iris=models/iris.joblib,tickets=models/tickets.joblib \
	  FEATURE_STORE_URL="sqlite:///$$scratch/features.db" PREDICTIONS_DB_URL="sqlite:///$$scratch/predictions.db" \
	  MODEL_CACHE_DIR="$$scratch/model-cache" PROMETHEUS_MULTIPROC_DIR="$$scratch/metrics"); \
	printf '%s\n' "$$POSTMAN_RECORDS_JSONL" > "$$scratch/records.jsonl"; \
	env -i "$${settings[@]}" $(VENV)/bin/mlapi features import "$$scratch/records.jsonl"; \
	echo "serving the demo models on http://127.0.0.1:$$port for the collection (log: $$scratch/server.log)"; \
	env -i "$${settings[@]}" $(VENV)/bin/mlapi serve --server uwsgi --port "$$port" >"$$scratch/server.log" 2>&1 & server=$$!; \
	for attempt in $$(seq 600); do \
	  if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$$port/readyz" 2>/dev/null; then break; fi; \
	  if ! kill -0 "$$server" 2>/dev/null || [ "$$attempt" = 600 ]; then \
	    echo "error: the server did not become ready on port $$port; its log:" >&2; tail -n 30 "$$scratch/server.log" >&2; exit 1; fi; \
	  sleep 0.1; \
	done; \
	status=0; \
	node_modules/.bin/newman run mlapi.postman_collection.json --env-var "baseUrl=http://127.0.0.1:$$port" \
	  --env-var maxRequestBytes=$(POSTMAN_MAX_REQUEST_BYTES) --reporters cli,json --reporter-json-export "$$report" \
	  || status=$$?; \
	if [ -f "$$report" ]; then $(VENV)/bin/python -c 'import json, sys; run = json.load(open(sys.argv[1]))["run"]; \
	  print("postman: %d assertions in %d requests, %d failed" % (run["stats"]["assertions"]["total"], \
	  run["stats"]["requests"]["total"], run["stats"]["assertions"]["failed"]))' "$$report"; fi; \
	if [ "$$status" != 0 ]; then echo "newman failed (exit $$status); the server's log ends:" >&2; tail -n 30 "$$scratch/server.log" >&2; fi; \
	exit "$$status"

# For a server of your own (make run), which reads FEATURE_STORE_URL's store (.env, else data/).
postman-records: $(VENV)/.installed-gcs ## add the records the Postman collection reads (ids 1, 2, 3, iris-1) to the store FEATURE_STORE_URL names
	@scratch="$$(mktemp -d)"; trap 'rm -rf "$$scratch"' EXIT; \
	printf '%s\n' "$$POSTMAN_RECORDS_JSONL" > "$$scratch/records.jsonl"; \
	$(VENV)/bin/mlapi features import "$$scratch/records.jsonl"

##@ Feature store (make aliases of `mlapi features`; FEATURE_STORE_URL, SOURCE_DB_URL from .env)
# Checked as the Makefile is read: before the virtualenv is created or installed.
ifneq ($(filter add-data-point,$(MAKECMDGOALS)),)
ifeq ($(strip $(TEXT)),)
$(error TEXT is not set: run make add-data-point TEXT="the record's text")
endif
endif
# Without a file or a source database there is nothing to import: say what to set.
ifneq ($(filter import-data-to-fs,$(MAKECMDGOALS)),)
ifeq ($(strip $(FILE)$(SOURCE_DB_URL)),)
$(error nothing to import: give FILE=rows.csv (CSV, Parquet or JSON lines with an id column), or set SOURCE_DB_URL, the database make add-data-point then writes to (unset, it writes straight into the store: nothing to import))
endif
endif
# TEXT reaches mlapi through the environment, not the shell line: quotes and backticks stay text.
add-data-point: export TEXT := $(TEXT)
add-data-point: $(VENV)/.installed-gcs ## store TEXT="..." as a record and print its id (SOURCE_DB_URL if set, else the store)
	$(VENV)/bin/mlapi features add -- "$$TEXT"

import-data-to-fs: $(VENV)/.installed-gcs ## copy SOURCE_DB_URL's records into the store, or import FILE=rows.csv|.parquet|.jsonl
	$(VENV)/bin/mlapi features import $(if $(strip $(FILE)),'$(strip $(FILE))')

##@ Docker
build-image: ## build the image DOCKER_PROJECT:<git sha>, with models/ copied in
	$(call require,DOCKER_PROJECT IMAGE_TAG)
	@mkdir -p models
	@if ! ls models/*.joblib >/dev/null 2>&1; then \
	  echo "warning: models/ holds no .joblib: the image needs MODEL_URI/MODELS pointing at gs:// (make upload-model), or run make demo"; fi
	@if [ -n "$$(git status --porcelain 2>/dev/null)" ]; then \
	  echo "warning: uncommitted changes: the image tagged $(IMAGE_TAG) holds code that commit does not"; fi
	$(CONTAINER_ENGINE) build --platform=linux/amd64 $(PIP_BUILD_ARGS) --tag=$(LOCAL_IMAGE) .

# A key given in GOOGLE_APPLICATION_CREDENTIALS (to read gs:// models) is mounted read-only at
# run time, never copied into the image; the container then runs as your uid to read it. Secret
# settings go by name (--env=NAME: docker reads the value from its own environment, off its command
# line), secret files mounted read-only at /run/secrets/<name>.
container_secret = /run/secrets/$(call lowercase,$(1:_FILE=))
run-container: ## run the image on http://localhost:8080 (PORT) with the server settings from .env
	$(call require,DOCKER_PROJECT IMAGE_TAG PORT)
	$(CONTAINER_ENGINE) run --rm --publish=$(PORT):8080 --env=PORT=8080 \
	  $(foreach v,$(PLAIN_SETTINGS),$(if $($(v)),--env='$(v)=$(strip $($(v)))')) \
	  $(foreach v,$(filter-out $(SECRET_FILE_SETTINGS),$(SECRETS_HELD)),--env=$(v)) \
	  $(foreach v,$(filter $(SECRET_FILE_SETTINGS),$(SECRETS_HELD)),--volume='$(abspath $($(v))):$(call \
	    container_secret,$(v)):ro' --env=$(v)=$(call container_secret,$(v))) \
	  $(if $(GOOGLE_APPLICATION_CREDENTIALS),--user="$$(id -u):$$(id -g)" \
	    --volume='$(abspath $(GOOGLE_APPLICATION_CREDENTIALS)):/run/secrets/gcp-key.json:ro' \
	    --env=GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp-key.json) \
	  $(LOCAL_IMAGE)

##@ Google Cloud set-up (as your own account, before create-config switches to the deployer)
check-gcp-login: ## show the account and project gcloud uses now
	@account="$$(gcloud config get-value account 2>/dev/null)"; \
	project="$$(gcloud config get-value project 2>/dev/null)"; \
	if [ -z "$$account" ]; then \
	  echo "error: gcloud has no active account: run 'gcloud auth login' (or make create-config)" >&2; exit 1; fi; \
	impersonated="$$(gcloud config get-value auth/impersonate_service_account 2>/dev/null)"; \
	echo "gcloud account: $$account"; \
	if [ -n "$$impersonated" ]; then echo "acting as: $$impersonated (impersonated)"; fi; \
	echo "gcloud project: $${project:-(none)}"; \
	if [ -n "$(GCP_PROJECT_ID)" ]; then \
	  if [ "$$project" != "$(GCP_PROJECT_ID)" ]; then \
	    echo "note: GCP_PROJECT_ID is $(GCP_PROJECT_ID) (every target passes --project=$(GCP_PROJECT_ID))"; fi; \
	  if [ "$$impersonated" = "$(DEPLOYER_EMAIL)" ]; then echo "this is the deployer service account (impersonated)"; \
	  elif [ "$$account" = "$(DEPLOYER_EMAIL)" ]; then echo "this is the deployer service account"; \
	  else echo "this is not the deployer ($(DEPLOYER_EMAIL)): right for the set-up steps; make create-config switches"; fi; \
	fi

enable-apis: ## enable the Cloud Run, Artifact Registry, IAM, IAM Credentials (impersonation), Cloud Storage, Pub/Sub, Secret Manager, Memorystore and Compute (VPC) APIs
	$(call require,GCP_PROJECT_ID)
	gcloud services enable run.googleapis.com artifactregistry.googleapis.com iam.googleapis.com \
	  iamcredentials.googleapis.com storage.googleapis.com pubsub.googleapis.com secretmanager.googleapis.com \
	  redis.googleapis.com compute.googleapis.com --project=$(GCP_PROJECT_ID)

create-service-account: ## create the deployer account and the service's runtime account (<name>-runtime)
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME)
	$(call check_account_name,$(RUNTIME_SERVICE_ACCOUNT_NAME))
	gcloud iam service-accounts create $(GCP_SERVICE_ACCOUNT_NAME) --project=$(GCP_PROJECT_ID) \
	  --display-name='$(DOCKER_PROJECT) deployer' \
	  --description='Pushes images of $(DOCKER_PROJECT) and deploys them to Cloud Run (make deploy)'
	gcloud iam service-accounts create $(RUNTIME_SERVICE_ACCOUNT_NAME) --project=$(GCP_PROJECT_ID) \
	  --display-name='$(DOCKER_PROJECT) runtime' \
	  --description='Identity of the $(DOCKER_PROJECT) Cloud Run service: reads models from the model bucket'

# Immutable tags: a tag, once pushed, always names the same image, so a rebuild (from a dirty tree, or
# another machine) cannot replace what a revision deployed as <commit> runs; the push is refused.
create-repository: ## create the Artifact Registry Docker repository ARTIFACT_REPOSITORY in GCP_REGION, with immutable tags
	$(call require,GCP_PROJECT_ID ARTIFACT_REPOSITORY)
	gcloud artifacts repositories create $(ARTIFACT_REPOSITORY) --repository-format=docker \
	  --location=$(GCP_REGION) --project=$(GCP_PROJECT_ID) --description='Images of $(DOCKER_PROJECT)' --immutable-tags

create-bucket: ## create the private model bucket gs://MODEL_BUCKET
	$(call require,GCP_PROJECT_ID MODEL_BUCKET)
	gcloud storage buckets create gs://$(MODEL_BUCKET) --project=$(GCP_PROJECT_ID) --location=$(GCP_REGION) \
	  --uniform-bucket-level-access --public-access-prevention

# Least privilege. The deployer may deploy Cloud Run services (not change who may call them),
# push to this one repository (not delete images), act as the runtime account only, and add
# models to the bucket. The runtime account may only read models.
add-roles: ## grant the two service accounts their (few) roles
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME ARTIFACT_REPOSITORY)
	gcloud projects add-iam-policy-binding $(GCP_PROJECT_ID) --member=serviceAccount:$(DEPLOYER_EMAIL) \
	  --role=roles/run.developer --condition=None --format=none
	gcloud artifacts repositories add-iam-policy-binding $(ARTIFACT_REPOSITORY) --location=$(GCP_REGION) \
	  --project=$(GCP_PROJECT_ID) --member=serviceAccount:$(DEPLOYER_EMAIL) \
	  --role=roles/artifactregistry.writer --format=none
	gcloud iam service-accounts add-iam-policy-binding $(RUNTIME_EMAIL) --project=$(GCP_PROJECT_ID) \
	  --member=serviceAccount:$(DEPLOYER_EMAIL) --role=roles/iam.serviceAccountUser --format=none
ifeq ($(DEPLOY_AUTH),impersonate)
	@member='$(strip $(DEPLOYER_IMPERSONATOR))'; \
	if [ -z "$$member" ]; then \
	  account="$$(gcloud config get-value account 2>/dev/null)"; \
	  case "$$account" in \
	    '') echo "error: gcloud has no active account to let impersonate the deployer: run 'gcloud auth login', or set DEPLOYER_IMPERSONATOR=user:you@example.com" >&2; exit 1;; \
	    *.gserviceaccount.com) member="serviceAccount:$$account";; \
	    *) member="user:$$account";; \
	  esac; \
	fi; \
	echo "gcloud iam service-accounts add-iam-policy-binding $(DEPLOYER_EMAIL) --member=$$member --role=roles/iam.serviceAccountTokenCreator"; \
	gcloud iam service-accounts add-iam-policy-binding $(DEPLOYER_EMAIL) --project=$(GCP_PROJECT_ID) \
	  --member="$$member" --role=roles/iam.serviceAccountTokenCreator --format=none
endif
ifeq ($(strip $(MODEL_BUCKET)),)
	@echo "MODEL_BUCKET is not set: no bucket roles granted (the image must hold its models)"
else
	gcloud storage buckets add-iam-policy-binding gs://$(MODEL_BUCKET) \
	  --member=serviceAccount:$(RUNTIME_EMAIL) --role=roles/storage.objectViewer --format=none
	gcloud storage buckets add-iam-policy-binding gs://$(MODEL_BUCKET) \
	  --member=serviceAccount:$(DEPLOYER_EMAIL) --role=roles/storage.objectCreator --format=none
	gcloud storage buckets add-iam-policy-binding gs://$(MODEL_BUCKET) \
	  --member=serviceAccount:$(DEPLOYER_EMAIL) --role=roles/storage.objectViewer --format=none
endif

create-key: ## DEPLOY_AUTH=key only: create a key for the deployer in secrets/ (git- and docker-ignored)
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME GCP_KEY_FILE)
	$(check_deploy_auth)
	@if [ '$(DEPLOY_AUTH)' != key ]; then echo "error: DEPLOY_AUTH is $(DEPLOY_AUTH): you act as the deployer by impersonation, no key is needed (make create-config); where impersonation is impossible, use DEPLOY_AUTH=key (docs/deploy.md)" >&2; exit 1; fi
	@if [ -e '$(GCP_KEY_FILE)' ]; then echo "error: $(GCP_KEY_FILE) exists; keep it, or delete it (and its key in IAM) first" >&2; exit 1; fi
	@mkdir -p '$(dir $(GCP_KEY_FILE))'
	umask 077 && gcloud iam service-accounts keys create '$(GCP_KEY_FILE)' --iam-account=$(DEPLOYER_EMAIL) \
	  --project=$(GCP_PROJECT_ID)

# impersonate: the new configuration keeps your account and borrows the deployer's identity for
# every command (auth/impersonate_service_account); key: it logs in as the deployer with the key.
create-config: ## create and activate a gcloud configuration that acts as the deployer (impersonation, or the key with DEPLOY_AUTH=key)
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME GCLOUD_CONFIGURATION)
	$(check_deploy_auth)
ifeq ($(DEPLOY_AUTH),key)
	@if [ ! -f '$(GCP_KEY_FILE)' ]; then echo "error: no key at $(GCP_KEY_FILE): run make create-key DEPLOY_AUTH=key first" >&2; exit 1; fi
	gcloud config configurations create $(GCLOUD_CONFIGURATION) || gcloud config configurations activate $(GCLOUD_CONFIGURATION)
	gcloud auth activate-service-account $(DEPLOYER_EMAIL) --key-file='$(GCP_KEY_FILE)'
else
	@account="$$(gcloud config get-value account 2>/dev/null)"; \
	if [ -z "$$account" ]; then echo "error: gcloud has no active account: run 'gcloud auth login' first (make add-roles lets it impersonate the deployer)" >&2; exit 1; fi; \
	echo "gcloud config configurations create $(GCLOUD_CONFIGURATION), as $$account impersonating $(DEPLOYER_EMAIL)"; \
	gcloud config configurations create $(GCLOUD_CONFIGURATION) || gcloud config configurations activate $(GCLOUD_CONFIGURATION); \
	gcloud config set account "$$account"
	gcloud config set auth/impersonate_service_account $(DEPLOYER_EMAIL)
endif
	gcloud config set project $(GCP_PROJECT_ID)
	gcloud config set run/region $(GCP_REGION)

##@ Secrets and Memorystore (as your own account: these grant IAM roles)
# Idempotent: a secret is created once, and a version added only when the value differs from the
# newest one (compared here, never printed). A value reaches gcloud on stdin from the environment
# (make exports .env's variables), a file by its path: never on a command line. The runtime account
# may read each secret; the deployer may only list its versions (make deploy pins the newest).
create-secrets: ## store the secret settings set in .env (API keys, tokens, database URLs with a password) in Secret Manager
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME DOCKER_PROJECT)
	@if [ -z '$(strip $(SECRETS_SENT))' ]; then echo "no secret setting is set ($(SECRET_SETTINGS) $(SECRET_FILE_SETTINGS), or a $(CREDENTIAL_URL_SETTINGS) holding a password): nothing to store"; fi
	@store() { \
	  name=$$1 setting=$$2 file=$$3; \
	  if [ -n "$$file" ] && [ ! -s "$$file" ]; then echo "error: $$setting=$$file is not a file with content" >&2; return 1; fi; \
	  if [ -z "$$file" ] && [ -z "$${!setting:-}" ]; then echo "error: $$setting is not in make's environment" >&2; return 1; fi; \
	  value() { if [ -n "$$file" ]; then cat -- "$$file"; else printf '%s' "$${!setting}"; fi; }; \
	  if ! gcloud secrets describe "$$name" --project=$(GCP_PROJECT_ID) --format='value(name)' >/dev/null 2>&1; then \
	    echo "gcloud secrets create $$name ($$setting)"; \
	    gcloud secrets create "$$name" --project=$(GCP_PROJECT_ID) --replication-policy=automatic \
	      --labels=app=$(DOCKER_PROJECT) --format=none; \
	  fi; \
	  if cmp -s <(gcloud secrets versions access latest --secret="$$name" --project=$(GCP_PROJECT_ID) 2>/dev/null) <(value); then \
	    echo "$$name: unchanged ($$setting)"; \
	  else \
	    echo "gcloud secrets versions add $$name --data-file=- ($$setting, on stdin)"; \
	    value | gcloud secrets versions add "$$name" --project=$(GCP_PROJECT_ID) --data-file=- --format=none; \
	  fi; \
	}; \
	$(foreach v,$(SECRETS_HELD),store '$(call secret_name,$(v))' $(v) '$(if $(filter $(SECRET_FILE_SETTINGS),$(v)),$($(v)))';) true
	@for name in $(foreach v,$(SECRETS_SENT),$(call secret_name,$(v))); do \
	  echo "gcloud secrets add-iam-policy-binding $$name: $(RUNTIME_EMAIL) reads it, $(DEPLOYER_EMAIL) lists its versions"; \
	  gcloud secrets add-iam-policy-binding "$$name" --project=$(GCP_PROJECT_ID) --member=serviceAccount:$(RUNTIME_EMAIL) \
	    --role=roles/secretmanager.secretAccessor --condition=None --format=none; \
	  gcloud secrets add-iam-policy-binding "$$name" --project=$(GCP_PROJECT_ID) --member=serviceAccount:$(DEPLOYER_EMAIL) \
	    --role=roles/secretmanager.viewer --condition=None --format=none; \
	done

# Memorystore has a private address only, on VPC_NETWORK (direct peering: nothing to set up
# beforehand); the service reaches it through Direct VPC egress, which make deploy adds when REDIS_URL
# is set. Billed by the hour while it exists, used or not: docs/deploy.md, "Memorystore", says how much.
create-redis: ## create the Memorystore for Redis instance REDIS_INSTANCE (REDIS_TIER, REDIS_SIZE_GB) and print its REDIS_URL
	$(call require,GCP_PROJECT_ID REDIS_INSTANCE REDIS_TIER REDIS_SIZE_GB REDIS_VERSION)
	$(call whole_numbers,REDIS_SIZE_GB)
	gcloud redis instances create $(REDIS_INSTANCE) --region=$(GCP_REGION) --project=$(GCP_PROJECT_ID) \
	  --tier=$(REDIS_TIER) --size=$(REDIS_SIZE_GB) --redis-version=$(REDIS_VERSION) \
	  --network=$(or $(strip $(VPC_NETWORK)),default) --connect-mode=direct-peering --labels=app=$(DOCKER_PROJECT) \
	  --redis-config=maxmemory-policy=volatile-lru
	@address="$$(gcloud redis instances describe $(REDIS_INSTANCE) --region=$(GCP_REGION) --project=$(GCP_PROJECT_ID) \
	  --format='value[separator=":"](host,port)')"; \
	echo "REDIS_URL=redis://$$address/0"; \
	echo "add that line to .env: make deploy then sends the service's private traffic through $(or $(strip $(VPC_NETWORK)),default) (Direct VPC egress)"

##@ Deploy to Cloud Run (as the deployer)
conf-docker-for-gcp: ## let docker push to GCP_REGION-docker.pkg.dev with the gcloud credentials
	$(call require,GCP_REGION)
	gcloud auth configure-docker $(REGISTRY)

image-to-gcp: ## tag the local image for Artifact Registry and push it
	$(call require,GCP_PROJECT_ID ARTIFACT_REPOSITORY DOCKER_PROJECT IMAGE_TAG)
	docker tag $(LOCAL_IMAGE) $(IMAGE)
	docker push $(IMAGE)

deploy: ## deploy the pushed image to Cloud Run; private unless CLOUD_RUN_ALLOW_UNAUTHENTICATED=true
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME ARTIFACT_REPOSITORY DOCKER_PROJECT IMAGE_TAG)
	$(check_push_audience)
	$(call whole_numbers,$(DEPLOY_NUMBERS))
	$(pin_secret_versions)
	gcloud run deploy $(DOCKER_PROJECT) $(DEPLOY_FLAGS)

list-cloud-run: ## list the Cloud Run services in GCP_REGION
	$(call require,GCP_PROJECT_ID)
	gcloud run services list $(SERVICE_FLAGS)

describe-service: ## show the service: URL, revision, traffic, settings
	$(call require,GCP_PROJECT_ID DOCKER_PROJECT)
	gcloud run services describe $(DOCKER_PROJECT) $(SERVICE_FLAGS)

list-revisions: ## list the service's revisions (names for rollback)
	$(call require,GCP_PROJECT_ID DOCKER_PROJECT)
	gcloud run revisions list --service=$(DOCKER_PROJECT) $(SERVICE_FLAGS)

# Content-addressed: the object is named after the file's sha256, so an upload never replaces
# a model a revision still serves, and the server verifies the bytes it downloads.
# A canned recipe; its first lines set MODEL_DIGEST and MODEL_OBJECT for the lines after it.
define upload_model
$(eval MODEL_DIGEST := $(if $(wildcard $(MODEL)),$(firstword $(shell sha256sum '$(MODEL)'))))
$(eval MODEL_OBJECT := gs://$(MODEL_BUCKET)/models/$(MODEL_DIGEST)$(if $(filter %.skops,$(MODEL)),.skops,.joblib))
@if [ ! -f '$(MODEL)' ]; then echo "error: MODEL=$(MODEL) is not a file" >&2; exit 1; fi
gcloud storage cp --no-clobber '$(MODEL)' $(MODEL_OBJECT)
@echo "MODEL_URI=$(MODEL_OBJECT)"
@echo "MODEL_SHA256=$(MODEL_DIGEST)"
endef

upload-model: ## copy MODEL=path to gs://MODEL_BUCKET/models/<sha256>.joblib (.skops for a .skops file) and print the URI
	$(call require,MODEL MODEL_BUCKET)
	$(upload_model)

# MODELS is removed from the service because it wins over MODEL_URI.
deploy-model: ## upload MODEL=path and roll a new revision serving it (no image rebuild)
	$(call require,MODEL MODEL_BUCKET GCP_PROJECT_ID DOCKER_PROJECT)
	$(upload_model)
	gcloud run services update $(DOCKER_PROJECT) $(SERVICE_FLAGS) \
	  --update-env-vars='MODEL_URI=$(MODEL_OBJECT)#sha256=$(MODEL_DIGEST)' --remove-env-vars=MODELS
	@echo "$(DOCKER_PROJECT) now serves $(MODEL_OBJECT); to keep it across make deploy, put the two lines above in .env"

deploy-canary: ## deploy the pushed image as revision tag canary and send it CANARY_PERCENT% of requests
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME ARTIFACT_REPOSITORY DOCKER_PROJECT IMAGE_TAG CANARY_PERCENT)
	$(check_push_audience)
	$(call whole_numbers,$(DEPLOY_NUMBERS))
	$(pin_secret_versions)
	gcloud run deploy $(DOCKER_PROJECT) $(DEPLOY_FLAGS) --no-traffic --tag=canary
	gcloud run services update-traffic $(DOCKER_PROJECT) $(SERVICE_FLAGS) --to-tags=canary=$(CANARY_PERCENT)

promote: ## send all requests to the newest revision (after a good canary)
	$(call require,GCP_PROJECT_ID DOCKER_PROJECT)
	gcloud run services update-traffic $(DOCKER_PROJECT) $(SERVICE_FLAGS) --to-latest

rollback: ## send all requests to REVISION=<name> (see make list-revisions)
	@if [ -z '$(REVISION)' ]; then echo "error: REVISION is not set: pick one from make list-revisions, then make rollback REVISION=<name>" >&2; exit 1; fi
	$(call require,GCP_PROJECT_ID DOCKER_PROJECT)
	gcloud run services update-traffic $(DOCKER_PROJECT) $(SERVICE_FLAGS) --to-revisions=$(REVISION)=100

##@ Batch inference set-up (as your own account: these grant IAM roles)
create-topic: ## create the Pub/Sub topic PUBSUB_TOPIC, its dead-letter topic, and a subscription keeping dead letters
	$(call require,GCP_PROJECT_ID PUBSUB_TOPIC DEAD_LETTER_RETENTION)
	gcloud pubsub topics create $(PUBSUB_TOPIC) --project=$(GCP_PROJECT_ID)
	gcloud pubsub topics create $(DEAD_LETTER_TOPIC) --project=$(GCP_PROJECT_ID)
	gcloud pubsub subscriptions create $(DEAD_LETTER_SUBSCRIPTION) --topic=$(DEAD_LETTER_TOPIC) \
	  --project=$(GCP_PROJECT_ID) --message-retention-duration=$(DEAD_LETTER_RETENTION) --expiration-period=never

create-pubsub-invoker: ## create the service account Pub/Sub pushes as (<name>-pubsub)
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME)
	$(call check_account_name,$(PUBSUB_INVOKER_NAME))
	gcloud iam service-accounts create $(PUBSUB_INVOKER_NAME) --project=$(GCP_PROJECT_ID) \
	  --display-name='$(DOCKER_PROJECT) Pub/Sub push' \
	  --description='Identity Pub/Sub pushes batch requests as: may invoke the $(DOCKER_PROJECT) Cloud Run service only'

# Sets PUSH_SERVICE_URL and PUSH_PROJECT_NUMBER for the lines after it (asking gcloud unless given).
define resolve_push_target
$(eval PUSH_SERVICE_URL := $(patsubst %/,%,$(strip $(or $(SERVICE_URL),$(shell gcloud run services describe \
  $(DOCKER_PROJECT) $(SERVICE_FLAGS) --format='value(status.url)')))))
$(if $(PUSH_SERVICE_URL),,$(error no URL for the Cloud Run service $(DOCKER_PROJECT) in $(GCP_REGION): deploy it first (make deploy), or set SERVICE_URL=https://...))
$(eval PUSH_PROJECT_NUMBER := $(strip $(or $(GCP_PROJECT_NUMBER),$(shell gcloud projects describe $(GCP_PROJECT_ID) \
  --format='value(projectNumber)'))))
$(if $(PUSH_PROJECT_NUMBER),,$(error no project number for $(GCP_PROJECT_ID): check gcloud's account (make check-gcp-login), or set GCP_PROJECT_NUMBER=...))
$(eval PUBSUB_SERVICE_AGENT := service-$(PUSH_PROJECT_NUMBER)@gcp-sa-pubsub.iam.gserviceaccount.com)
endef

# The push identity may invoke this one service (not the project's others). Pub/Sub's own service
# agent signs its tokens (needed in projects from before April 2021), and moves a message that
# failed MAX_DELIVERY_ATTEMPTS times to the dead-letter topic: for that it must publish there and
# acknowledge on the subscription. The token's audience is the one make deploy gave the service
# (PUSH_AUDIENCE), which Cloud Run's IAM and the app both check; not the URL, which the app cannot trust.
create-push-subscription: ## push PUBSUB_TOPIC to the service's /pubsub/push, authenticated, with retries and dead letters
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME DOCKER_PROJECT PUBSUB_TOPIC PUBSUB_SUBSCRIPTION \
	  MAX_DELIVERY_ATTEMPTS MIN_RETRY_DELAY MAX_RETRY_DELAY)
	$(call whole_numbers,REQUEST_TIMEOUT ACK_DEADLINE)
	$(check_push_audience)
	$(resolve_push_target)
	gcloud run services add-iam-policy-binding $(DOCKER_PROJECT) $(SERVICE_FLAGS) \
	  --member=serviceAccount:$(PUBSUB_INVOKER_EMAIL) --role=roles/run.invoker --format=none
	gcloud iam service-accounts add-iam-policy-binding $(PUBSUB_INVOKER_EMAIL) --project=$(GCP_PROJECT_ID) \
	  --member=serviceAccount:$(PUBSUB_SERVICE_AGENT) --role=roles/iam.serviceAccountTokenCreator --format=none
	gcloud pubsub subscriptions create $(PUBSUB_SUBSCRIPTION) --topic=$(PUBSUB_TOPIC) --project=$(GCP_PROJECT_ID) \
	  --push-endpoint=$(PUSH_SERVICE_URL)/pubsub/push --push-auth-service-account=$(PUBSUB_INVOKER_EMAIL) \
	  --push-auth-token-audience='$(PUSH_TOKEN_AUDIENCE)' --ack-deadline=$(PUSH_ACK_DEADLINE) \
	  --dead-letter-topic=projects/$(GCP_PROJECT_ID)/topics/$(DEAD_LETTER_TOPIC) \
	  --max-delivery-attempts=$(MAX_DELIVERY_ATTEMPTS) --min-retry-delay=$(MIN_RETRY_DELAY) \
	  --max-retry-delay=$(MAX_RETRY_DELAY) --expiration-period=never
	gcloud pubsub topics add-iam-policy-binding $(DEAD_LETTER_TOPIC) --project=$(GCP_PROJECT_ID) \
	  --member=serviceAccount:$(PUBSUB_SERVICE_AGENT) --role=roles/pubsub.publisher --format=none
	gcloud pubsub subscriptions add-iam-policy-binding $(PUBSUB_SUBSCRIPTION) --project=$(GCP_PROJECT_ID) \
	  --member=serviceAccount:$(PUBSUB_SERVICE_AGENT) --role=roles/pubsub.subscriber --format=none

##@ Batch inference jobs (as the deployer)
# The same image and server settings as deploy, run as the runtime account. Each task reads and
# writes the databases itself: a SQLite URL would be a file inside that task's container.
deploy-batch-job: ## create or update the Cloud Run Job BATCH_JOB_NAME: score the feature store in BATCH_TASKS shards
	$(call require,GCP_PROJECT_ID GCP_SERVICE_ACCOUNT_NAME ARTIFACT_REPOSITORY DOCKER_PROJECT IMAGE_TAG \
	  BATCH_JOB_NAME BATCH_TASKS BATCH_PARALLELISM BATCH_MAX_RETRIES BATCH_TASK_TIMEOUT BATCH_MEMORY BATCH_CPU)
	@$(foreach v,FEATURE_STORE_URL PREDICTIONS_DB_URL,$(if $(filter-out sqlite:%,$(firstword $($(v)))),,\
	  echo "warning: $(v) is $(if $($(v)),SQLite,unset (so SQLite)): on Cloud Run that is a file inside each task's container, empty at the start and lost at the end" >&2;))
	$(pin_secret_versions)
	gcloud run jobs deploy $(BATCH_JOB_NAME) --image=$(IMAGE) $(SERVICE_FLAGS) --service-account=$(RUNTIME_EMAIL) \
	  --command=mlapi --args=$(BATCH_ARGS) --tasks=$(BATCH_TASKS) --parallelism=$(BATCH_PARALLELISM) \
	  --max-retries=$(BATCH_MAX_RETRIES) --task-timeout=$(BATCH_TASK_TIMEOUT) --memory=$(BATCH_MEMORY) \
	  --cpu=$(BATCH_CPU) $(ENV_VARS_FLAG) $(SECRETS_FLAG) $(NETWORK_FLAGS)

run-batch-job: ## run the Cloud Run Job BATCH_JOB_NAME once and wait for it to finish
	$(call require,GCP_PROJECT_ID BATCH_JOB_NAME)
	gcloud run jobs execute $(BATCH_JOB_NAME) $(SERVICE_FLAGS) --wait

##@ Clean up
delete-deployment: ## delete the Cloud Run service (asks first)
	$(call require,GCP_PROJECT_ID DOCKER_PROJECT)
	gcloud run services delete $(DOCKER_PROJECT) $(SERVICE_FLAGS)

delete-latest-gcp-image: ## delete this commit's image from Artifact Registry (asks first; needs repoAdmin, see README)
	$(call require,GCP_PROJECT_ID ARTIFACT_REPOSITORY DOCKER_PROJECT IMAGE_TAG)
	gcloud artifacts docker images delete $(IMAGE) --delete-tags
