"""The Makefile as a whole: `make help` lists every target, the settings that travel with the
container are the ones example.env documents, and a target missing a variable it needs says
which one before running any command."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT
from makefile_helpers import (BUCKET, GCP, make, model_file, makefile_text, ok, phony_targets,  # noqa: F401
                              rule_targets, server_settings_travelling)


def test_help_is_the_default_goal_and_lists_every_target_with_a_description(make):
    help_text = ok(make("help")).out
    assert ok(make()).out == help_text
    assert phony_targets() == rule_targets()
    described = dict(re.findall(r"^  ([a-z][a-z0-9-]*) +(\S.*)$", help_text, flags=re.M))
    assert set(described) == rule_targets()
    for target in ("check-gcp-login", "create-service-account", "add-roles", "create-key", "create-config",
                   "build-image", "run-container", "conf-docker-for-gcp", "image-to-gcp", "deploy",
                   "list-cloud-run", "describe-service", "delete-deployment", "delete-latest-gcp-image",
                   "create-repository", "create-bucket", "upload-model", "deploy-model", "deploy-canary",
                   "promote", "rollback", "run", "test", "venv", "add-data-point", "import-data-to-fs",
                   "create-topic", "create-pubsub-invoker", "create-push-subscription", "deploy-batch-job",
                   "run-batch-job", "create-secrets", "create-redis"):
        assert target in described, f"{target} is missing from make help"



def test_the_feature_store_and_database_settings_travel_with_the_container():
    assert set(server_settings_travelling()) >= {
        "FEATURE_TABLE", "FEATURE_ID_COLUMN", "FEATURE_TEXT_COLUMN", "FEATURE_STORE_URL", "FEATURE_STORE_WRITE_URL",
        "PREDICTIONS_DB_URL", "SOURCE_DB_URL", "SOURCE_TABLE"}
    # local paths, ports and credentials stay behind
    assert not {"PORT", "MODEL_CACHE_DIR", "GOOGLE_APPLICATION_CREDENTIALS"} & set(server_settings_travelling())


def test_example_env_lists_every_setting():
    example = (ROOT / "example.env").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, flags=re.M))
    makefile_settings = set(re.findall(r"^([A-Z][A-Z0-9_]*) \?=", makefile_text(), flags=re.M)) - {"ENV_FILE"}
    server_settings = {"PORT", "MODELS", "MODEL_URI", "MODEL_NAME", "MODEL_SHA256", "MODEL_CACHE_DIR",
                       "STRICT_SKLEARN_VERSION", "MAX_REQUEST_BYTES", "PREDICTION_CACHE_SIZE", "LOG_LEVEL",
                       "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "PUBSUB_TOPIC", "ML_API_URL",
                       "PUBSUB_EMULATOR_HOST", *server_settings_travelling()}
    missing = (makefile_settings | server_settings | {"IMAGE_TAG"}) - listed
    assert not missing, f"example.env does not mention {sorted(missing)}"
    for line in example.splitlines():
        assert not re.match(r'^#? ?[A-Z_]+=["\']', line), f"quotes would reach make literally: {line}"


# ---- variables a target needs ------------------------------------------------------------------
NEEDS_PROJECT = ["enable-apis", "create-service-account", "create-repository", "create-bucket", "add-roles",
                 "create-key", "create-config", "image-to-gcp", "deploy", "list-cloud-run", "describe-service",
                 "list-revisions", "deploy-model", "deploy-canary", "promote", "rollback",
                 "delete-deployment", "delete-latest-gcp-image", "create-topic", "create-pubsub-invoker",
                 "create-push-subscription", "deploy-batch-job", "run-batch-job", "create-secrets", "create-redis"]


@pytest.mark.parametrize("target", NEEDS_PROJECT)
def test_a_missing_project_id_fails_clearly_before_any_command(make, model_file, target):
    run = make(target, MODEL=model_file, MODEL_BUCKET=BUCKET, REVISION="mlapi-00001-abc")
    assert run.returncode != 0
    assert f"GCP_PROJECT_ID is not set: add GCP_PROJECT_ID=... to .env (see example.env) or run `make {target} " \
           f"GCP_PROJECT_ID=...`" in run.err
    assert run.calls == []


@pytest.mark.parametrize("target,variables,missing", [
    ("create-bucket", GCP, "MODEL_BUCKET"),
    ("upload-model", {"MODEL": "x.joblib"}, "MODEL_BUCKET"),
    ("upload-model", {"MODEL_BUCKET": BUCKET}, "MODEL"),
    ("deploy-model", {**GCP, "MODEL_BUCKET": BUCKET}, "MODEL"),
    ("deploy", {**GCP, "GCP_SERVICE_ACCOUNT_NAME": ""}, "GCP_SERVICE_ACCOUNT_NAME"),
    ("image-to-gcp", {**GCP, "IMAGE_TAG": "", "GIT_SHA": ""}, "IMAGE_TAG"),
    ("create-topic", {**GCP, "PUBSUB_TOPIC": ""}, "PUBSUB_TOPIC"),
    ("create-pubsub-invoker", {**GCP, "GCP_SERVICE_ACCOUNT_NAME": ""}, "GCP_SERVICE_ACCOUNT_NAME"),
    ("create-push-subscription", {**GCP, "PUBSUB_TOPIC": ""}, "PUBSUB_TOPIC"),
    ("create-push-subscription", {**GCP, "MAX_DELIVERY_ATTEMPTS": ""}, "MAX_DELIVERY_ATTEMPTS"),
    ("create-push-subscription", {**GCP, "MIN_RETRY_DELAY": ""}, "MIN_RETRY_DELAY"),
    ("deploy-batch-job", {**GCP, "BATCH_TASKS": ""}, "BATCH_TASKS"),
    ("deploy-batch-job", {**GCP, "BATCH_JOB_NAME": ""}, "BATCH_JOB_NAME"),
    ("deploy-batch-job", {**GCP, "IMAGE_TAG": "", "GIT_SHA": ""}, "IMAGE_TAG"),
    ("run-batch-job", {**GCP, "BATCH_JOB_NAME": ""}, "BATCH_JOB_NAME"),
])
def test_other_missing_variables_fail_clearly(make, target, variables, missing):
    run = make(target, **variables)
    assert run.returncode != 0
    assert f"{missing} is not set" in run.err
    assert run.calls == []


def test_rollback_needs_a_revision(make):
    run = make("rollback", **GCP)
    assert run.returncode != 0
    assert "REVISION is not set: pick one from make list-revisions" in run.err
    assert run.calls == []


def test_upload_model_refuses_a_missing_file(make, tmp_path):
    run = make("upload-model", MODEL=tmp_path / "nope.joblib", MODEL_BUCKET=BUCKET)
    assert run.returncode != 0 and "is not a file" in run.err
    assert run.calls == []


def test_the_files_example_env_points_to_are_in_the_repository():
    # A reader follows "see bench/peers/README.md" from a checkout: no path outside it.
    text = (ROOT / "example.env").read_text()
    assert "../" not in text
    named = set(re.findall(r"[\w./-]+/[\w.-]+\.(?:md|py)\b", text))
    assert "bench/peers/README.md" in named
    assert [path for path in sorted(named) if not (ROOT / path).is_file()] == []


def test_every_setting_the_app_reads_travels_or_is_a_secret_or_stays_behind_on_purpose():
    """A setting added to app/config.py and forgotten here would silently not reach Cloud Run
    (--set-env-vars sends only SERVER_SETTINGS and drops the rest)."""
    config = (ROOT / "app" / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r'\(env, "([A-Z][A-Z0-9_]*)"', config))
    secrets = {name for names in re.findall(r"^SECRET(?:_FILE)?_SETTINGS = (.*)$", makefile_text(), flags=re.M)
               for name in names.split()}  # through Secret Manager (make create-secrets)
    stays_behind = {
        "PORT", "K_SERVICE", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_COUNT", "CLOUD_RUN_TASK_INDEX",  # Cloud Run's own
        "MODEL_CACHE_DIR", "UWSGI_INI", "PROMETHEUS_MULTIPROC_DIR", "STORAGE_EMULATOR_HOST",  # local paths, tests
        "GCP_PROJECT_ID", "ML_API_URL", "PUBSUB_TOPIC",  # the client side: mlapi publish, make
    }
    forgotten = read - set(server_settings_travelling()) - secrets - stays_behind
    assert not forgotten, f"settings that reach no container: {sorted(forgotten)}"
