"""The real Cloud SDK validates every gcloud command the Makefile runs.

Every distinct gcloud command the targets produce under the recording stand-in is replayed
through the real gcloud with an empty configuration: it parses and validates all arguments
before it fails for want of an account, so an argument error there is a bug in the Makefile.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import cloud_sdk_missing
from makefile_helpers import BUCKET, GCP, make, makefile_text, model_file, ok  # noqa: F401


def scenarios(scratch: Path, model: Path) -> list[tuple[str, dict]]:
    """One make invocation per variant of every target that calls gcloud."""
    key = scratch / "gcp-key.json"
    key.write_text('{"type": "service_account"}')
    models = f"iris=models/iris.joblib,tickets:2=gs://{BUCKET}/models/{'cd' * 32}.joblib#sha256={'cd' * 32}"
    api_keys = scratch / "api-keys.txt"
    api_keys.write_text("key-one\nkey-two\n")
    # Settings that are secrets, and a database URL that is one because it holds a password.
    secrets = {"ADMIN_TOKEN": "adm1n", "METRICS_TOKEN": "m3trics", "API_KEYS": "key-a,key-b",
               "API_KEYS_FILE": api_keys, "PREDICTIONS_DB_URL": "postgresql+psycopg://writer:pa55@10.0.0.5/predictions",
               "REDIS_URL": "redis://:auth@10.0.0.3:6379/0", "RATE_LIMIT": "100/minute;2000/hour"}
    return [
        ("check-gcp-login", {}),
        ("enable-apis", GCP),
        ("create-service-account", GCP),
        ("create-repository", GCP),
        ("create-bucket", {**GCP, "MODEL_BUCKET": BUCKET}),
        ("add-roles", {**GCP, "MODEL_BUCKET": BUCKET}),  # with the impersonation grant
        ("add-roles", {**GCP, "DEPLOYER_IMPERSONATOR": "group:deployers@example.com"}),
        ("create-key", {**GCP, "GCP_KEY_FILE": scratch / "new" / "gcp-key.json", "DEPLOY_AUTH": "key"}),
        ("create-config", GCP),  # impersonation
        ("create-config", {**GCP, "GCP_KEY_FILE": key, "DEPLOY_AUTH": "key"}),
        ("conf-docker-for-gcp", {}),
        ("deploy", GCP),
        ("deploy", {**GCP, "CLOUD_RUN_ALLOW_UNAUTHENTICATED": "true", "CLOUD_RUN_INGRESS": "internal",
                    "CLOUD_RUN_MEMORY": "2Gi", "CLOUD_RUN_CPU": "2", "CLOUD_RUN_MIN_INSTANCES": "1"}),
        ("deploy", {**GCP, "MODELS": models, "LOG_LEVEL": "DEBUG", "STRICT_SKLEARN_VERSION": "1"}),
        ("deploy", {**GCP, "MODEL_URI": f"gs://{BUCKET}/models/{'ef' * 32}.joblib", "MODEL_SHA256": "ef" * 32}),
        ("deploy", {**GCP, "MAX_BATCH_SIZE": "32", "CLOUD_RUN_CPU": "4", "CLOUD_RUN_MEMORY": "4Gi",
                    "REQUEST_TIMEOUT": "300", "CLOUD_RUN_EXECUTION_ENVIRONMENT": "gen1", "CLOUD_RUN_CPU_BOOST": "false",
                    "MAX_ROWS": "500", "ENVIRONMENT": "production", "PUSH_AUDIENCE": "https://batch.example.com"}),
        ("deploy", {**GCP, "SERVER": "gunicorn", "GUNICORN_THREADS": "4", "WEB_CONCURRENCY": "2",
                    "CLOUD_RUN_CPU": "2", "REQUEST_TIMEOUT": "3600", "PUSH_AUTH": "off"}),
        ("list-cloud-run", GCP),
        ("describe-service", GCP),
        ("list-revisions", GCP),
        ("upload-model", {"MODEL": model, "MODEL_BUCKET": BUCKET}),
        ("deploy-model", {**GCP, "MODEL": model, "MODEL_BUCKET": BUCKET}),
        ("deploy-canary", GCP),
        ("promote", GCP),
        ("rollback", {**GCP, "REVISION": "mlapi-00002-abc"}),
        ("delete-deployment", GCP),
        ("delete-latest-gcp-image", GCP),
        ("create-topic", GCP),
        ("create-topic", {**GCP, "PUBSUB_TOPIC": "scoring", "DEAD_LETTER_RETENTION": "10m"}),
        ("create-pubsub-invoker", GCP),
        ("create-push-subscription", GCP),
        ("create-push-subscription", {**GCP, "REQUEST_TIMEOUT": "300"}),
        ("create-push-subscription", {**GCP, "SERVICE_URL": "https://batch.example.com/", "GCP_PROJECT_NUMBER": "42",
                                      "PUBSUB_TOPIC": "scoring", "ACK_DEADLINE": "600", "MAX_DELIVERY_ATTEMPTS": "5",
                                      "MIN_RETRY_DELAY": "0s", "MAX_RETRY_DELAY": "600s"}),
        ("create-push-subscription", {**GCP, "ACK_DEADLINE": "10", "MAX_DELIVERY_ATTEMPTS": "100",
                                      "MIN_RETRY_DELAY": "1s", "MAX_RETRY_DELAY": "1s"}),
        ("deploy-batch-job", GCP),
        ("deploy-batch-job", {**GCP, "BATCH_MODEL": "tickets:2", "BATCH_TASKS": "10", "BATCH_PARALLELISM": "5",
                              "BATCH_MAX_RETRIES": "0", "BATCH_TASK_TIMEOUT": "2h", "BATCH_MEMORY": "4Gi",
                              "BATCH_CPU": "4", "MODELS": models,
                              "FEATURE_STORE_URL": "postgresql+psycopg://reader@10.0.0.5/features?sslmode=require",
                              "PREDICTIONS_DB_URL": "mysql+pymysql://writer@10.0.0.6/predictions?charset=utf8mb4",
                              "FEATURE_TABLE": "customers", "FEATURE_ID_COLUMN": "customer_id"}),
        ("deploy", {**GCP, "FEATURE_STORE_URL": "postgresql+psycopg://reader@10.0.0.5/features?sslmode=require",
                    "PREDICTIONS_DB_URL": "postgresql+psycopg://writer@10.0.0.5/predictions", "SOURCE_TABLE": "t"}),
        ("run-batch-job", GCP),
        ("create-secrets", {**GCP, **secrets, "REDIS_URL_SECRET": "shared-redis-url"}),
        ("create-redis", GCP),
        ("create-redis", {**GCP, "REDIS_INSTANCE": "cache", "REDIS_TIER": "standard", "REDIS_SIZE_GB": "5",
                          "REDIS_VERSION": "redis_7_0", "VPC_NETWORK": "serving"}),
        ("deploy", {**GCP, **secrets}),  # --set-secrets (variables and a mounted file), Direct VPC egress
        ("deploy", {**GCP, "REDIS_URL": "redis://10.8.0.3:6379/0", "VPC_NETWORK": "serving",
                    "VPC_SUBNET": "serving-europe-west1"}),
        ("deploy-canary", {**GCP, **secrets}),
        ("deploy-batch-job", {**GCP, **secrets}),
    ]


# What gcloud prints when arguments are fine but it has no account (or the test's dummy key).
EXPECTED_FAILURES = ("You do not currently have an active account selected",
                     "The .json key file is not in a valid format")
# What it prints for a bad command line: argparse errors (exit 2) and the checks commands make
# on their arguments before calling an API.
ARGUMENT_ERROR = re.compile(
    r"unrecognized arguments|argument [-\w]+:|Invalid choice|Invalid value|is not a valid|Bad value|Bad syntax"
    r"|Missing required argument|must be specified|is not properly specified|expected one argument"
    r"|not an integer|is negative|mutually exclusive|cannot be specified|ambiguous", re.I)


# Seconds. A replay takes 5 to 30 s while eight run at once on a busy machine: this is headroom
# for a slow one, not a licence to hang (a command stuck on the network or a prompt runs forever).
REPLAY_TIMEOUT = 120


@dataclass
class Replay:
    argv: list[str]
    returncode: int | None  # None: killed after REPLAY_TIMEOUT
    output: str


def replay(gcloud: str, argv: list[str], scratch: Path, timeout: float = REPLAY_TIMEOUT) -> Replay:
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "CLOUDSDK_CONFIG": str(home / "gcloud"),      # empty: no account, no project
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",          # never wait for an answer
           "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",  # do not probe for a GCE metadata server
           "DOCKER_CONFIG": str(home / "docker")}         # configure-docker writes here, not ~/.docker
    try:
        # stdin empty: `--data-file=-` must not wait on the terminal pytest runs in
        done = subprocess.run([gcloud, *argv], env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
        return Replay(argv, done.returncode, done.stdout + done.stderr)
    except subprocess.TimeoutExpired as expired:
        partial = (expired.stdout or b"") + (expired.stderr or b"")
        return Replay(argv, None, partial.decode(errors="replace") if isinstance(partial, bytes) else partial)


def problem(result: Replay) -> str | None:
    """Why a replayed command shows a bug, or None when gcloud accepted its arguments.

    A replay that does not finish is a failure too: it never reached the account check, so
    its arguments were not shown to be valid (and a command that waits on input or the
    network is one the Makefile should not run unattended)."""
    shown = "gcloud " + " ".join(result.argv)
    if ARGUMENT_ERROR.search(result.output):
        return f"{shown}\n  argument error:\n{result.output.strip()}"
    if result.returncode is None:
        return f"{shown}\n  did not finish in time; its output so far:\n{result.output.strip()}"
    if result.returncode != 0 and not any(expected in result.output for expected in EXPECTED_FAILURES):
        return f"{shown}\n  failed ({result.returncode}) for an unexpected reason:\n{result.output.strip()}"
    return None


def test_the_real_gcloud_accepts_every_command_the_makefile_runs(make, model_file, tmp_path):
    gcloud = shutil.which("gcloud")  # this process's PATH: the real SDK, not the stand-in
    if gcloud is None:
        cloud_sdk_missing("the recorded gcloud commands cannot be validated")
    runs = scenarios(tmp_path, model_file)
    gcloud_targets = {name for name, body in re.findall(r"^([a-z][a-z0-9-]*):.*\n((?:\t.*\n|ifeq.*\n|else\n|endif\n)*)",
                                                        makefile_text(), flags=re.M)
                      if "gcloud " in body}
    uncovered = gcloud_targets - {target for target, _ in runs}
    assert not uncovered, f"targets calling gcloud without a replay scenario: {sorted(uncovered)}"

    commands: list[list[str]] = []
    for target, variables in runs:
        run = ok(make(target, env={"FAKEBIN_ACCOUNT": "owner@example.com"}, **variables))
        assert run.argvs("gsutil") == [], f"{target}: storage goes through `gcloud storage`"
        for argv in run.argvs():
            if argv not in commands:
                commands.append(argv)
    assert len(commands) > 25

    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 2))) as pool:
        results = list(pool.map(lambda argv: replay(gcloud, argv, tmp_path), commands))
    problems = [found for found in map(problem, results) if found]
    assert not problems, "\n\n".join(problems)


def test_a_replay_that_does_not_finish_is_a_failure(tmp_path):
    stuck = tmp_path / "gcloud"
    stuck.write_text("#!/bin/sh\necho 'Waiting for the metadata server...'\nexec sleep 30\n")
    stuck.chmod(0o755)
    result = replay(str(stuck), ["run", "services", "list"], tmp_path, timeout=1)
    assert result.returncode is None and "Waiting for the metadata server" in result.output
    assert "did not finish" in problem(result)


@pytest.mark.parametrize("returncode, output, failed", [
    (1, "ERROR: (gcloud.run.deploy) You do not currently have an active account selected.", False),
    (0, "Updated property [core/project].", False),
    (2, "ERROR: (gcloud.run.deploy) unrecognized arguments: --cpus=2", True),
    (1, "ERROR: (gcloud.run.deploy) PERMISSION_DENIED: something else entirely", True),
], ids=["stops-at-the-account", "needs-no-account", "argument-error", "other-failure"])
def test_a_replay_passes_only_when_gcloud_stops_at_the_missing_account(returncode, output, failed):
    assert (problem(Replay(["run", "deploy", "mlapi"], returncode, output)) is not None) == failed
