"""The Makefile's commands, checked without Google Cloud, Docker or npm.

Recording stand-ins (tests/fakebin) take the place of gcloud, docker, gsutil and npm on PATH,
and each target's exact commands and flags are asserted. Then every distinct gcloud command
the targets produce is replayed through the real Cloud SDK with an empty configuration: it
parses and validates all arguments before it fails for want of an account, so an argument
error there is a bug in the Makefile.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, cloud_sdk_missing, service_missing

MAKEFILE = ROOT / "Makefile"
FAKEBIN = Path(__file__).resolve().parents[1] / "fakebin"
MAKE = shutil.which("make")

PROJECT = "demo-project-123"
BUCKET = "demo-project-123-models"
SA_NAME = "machine-learning-api"
DEPLOYER = f"{SA_NAME}@{PROJECT}.iam.gserviceaccount.com"
RUNTIME = f"{SA_NAME}-runtime@{PROJECT}.iam.gserviceaccount.com"
GCP = {"GCP_PROJECT_ID": PROJECT}
SERVICE_FLAGS = ["--region=europe-west1", f"--project={PROJECT}"]


def git_sha() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


def image(tag: str) -> str:
    return f"europe-west1-docker.pkg.dev/{PROJECT}/mlapi/mlapi:{tag}"


# ---- running make with the stand-ins ----------------------------------------------------------
@dataclass
class MakeRun:
    returncode: int
    out: str
    err: str
    calls: list[dict]

    def argvs(self, tool: str = "gcloud") -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["tool"] == tool]


class Make:
    """`make -s TARGET VAR=...` in the repository, with .env ignored and the stand-ins first on PATH."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.home = scratch / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, *targets: str, env: dict | None = None, path: str | None = None,
                 makefile: Path = MAKEFILE, cwd: Path = ROOT, **variables) -> MakeRun:
        self.count += 1
        log = self.scratch / f"calls-{self.count}.jsonl"
        full_env = {
            "PATH": path if path is not None else os.pathsep.join(
                [str(FAKEBIN), str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.home), "LANG": "C.UTF-8", "FAKEBIN_LOG": str(log), **(env or {}),
        }
        command = [MAKE, "-s", "--no-print-directory", "-f", str(makefile), "-C", str(cwd),
                   "ENV_FILE=/dev/null", *targets, *(f"{k}={v}" for k, v in variables.items())]
        done = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=120)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return MakeRun(done.returncode, done.stdout, done.stderr, calls)


@pytest.fixture
def make(tmp_path):
    if MAKE is None:
        service_missing("GNU make is not installed")
    return Make(tmp_path)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(b"not really a model, but bytes with a known sha256")
    return path


def ok(run: MakeRun) -> MakeRun:
    assert run.returncode == 0, f"make failed ({run.returncode}):\n{run.out}\n{run.err}"
    return run


# ---- help and structure ------------------------------------------------------------------------
def makefile_text() -> str:
    return MAKEFILE.read_text(encoding="utf-8").replace("\\\n", " ")


def phony_targets() -> set[str]:
    return {name for line in makefile_text().splitlines() if line.startswith(".PHONY:")
            for name in line.split(":", 1)[1].split()}


def rule_targets() -> set[str]:
    """Every target defined by a rule (`name:`), not file targets like $(VENV)/bin/python."""
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile_text(), flags=re.M))


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
                   "run-batch-job"):
        assert target in described, f"{target} is missing from make help"


def server_settings_travelling() -> list[str]:
    """SERVER_SETTINGS: the settings run-container, deploy and deploy-batch-job pass to the container."""
    [names] = re.findall(r"^SERVER_SETTINGS = (.*)$", makefile_text(), flags=re.M)
    return names.split()


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
                 "create-push-subscription", "deploy-batch-job", "run-batch-job"]


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


# ---- Google Cloud set-up -----------------------------------------------------------------------
def test_check_gcp_login_names_the_account_and_whether_it_is_the_deployer(make):
    as_deployer = ok(make("check-gcp-login", env={"FAKEBIN_ACCOUNT": DEPLOYER, "FAKEBIN_PROJECT": PROJECT}, **GCP))
    assert f"gcloud account: {DEPLOYER}" in as_deployer.out
    assert f"gcloud project: {PROJECT}" in as_deployer.out
    assert "this is the deployer service account" in as_deployer.out
    assert as_deployer.argvs() == [["config", "get-value", "account"], ["config", "get-value", "project"]]

    as_owner = ok(make("check-gcp-login", env={"FAKEBIN_ACCOUNT": "owner@example.com", "FAKEBIN_PROJECT": "other"},
                       **GCP))
    assert "this is not the deployer" in as_owner.out
    assert f"GCP_PROJECT_ID is {PROJECT}" in as_owner.out

    logged_out = make("check-gcp-login")
    assert logged_out.returncode != 0
    assert "gcloud has no active account: run 'gcloud auth login'" in logged_out.err


def test_enable_apis(make):
    assert ok(make("enable-apis", **GCP)).argvs() == [
        ["services", "enable", "run.googleapis.com", "artifactregistry.googleapis.com", "iam.googleapis.com",
         "storage.googleapis.com", "pubsub.googleapis.com", f"--project={PROJECT}"]]


def test_create_service_account_makes_a_deployer_and_a_runtime_account(make):
    argvs = ok(make("create-service-account", **GCP)).argvs()
    assert [argv[:4] for argv in argvs] == [["iam", "service-accounts", "create", SA_NAME],
                                            ["iam", "service-accounts", "create", f"{SA_NAME}-runtime"]]
    assert all(f"--project={PROJECT}" in argv for argv in argvs)

    too_long = make("create-service-account", GCP_SERVICE_ACCOUNT_NAME="x" * 23, **GCP)  # + "-runtime": 31
    assert too_long.returncode != 0 and "at most 30 characters" in too_long.err
    assert too_long.calls == []


def test_create_repository_and_bucket(make):
    assert ok(make("create-repository", **GCP)).argvs() == [
        ["artifacts", "repositories", "create", "mlapi", "--repository-format=docker", "--location=europe-west1",
         f"--project={PROJECT}", "--description=Images of mlapi"]]
    assert ok(make("create-bucket", MODEL_BUCKET=BUCKET, **GCP)).argvs() == [
        ["storage", "buckets", "create", f"gs://{BUCKET}", f"--project={PROJECT}", "--location=europe-west1",
         "--uniform-bucket-level-access", "--public-access-prevention"]]


def bindings(argvs: list[list[str]]) -> set[tuple[str, str, str, str]]:
    """(resource kind, resource, member, role) for each add-iam-policy-binding call."""
    found = set()
    for argv in argvs:
        verb = argv.index("add-iam-policy-binding")
        flags = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        found.add((" ".join(argv[:verb]), argv[verb + 1], flags["member"], flags["role"]))
    return found


def test_add_roles_grants_exactly_the_least_privilege_roles(make):
    run = ok(make("add-roles", MODEL_BUCKET=BUCKET, **GCP))
    assert all("add-iam-policy-binding" in argv for argv in run.argvs())
    assert bindings(run.argvs()) == {
        # deployer: deploy Cloud Run services (but not change their IAM policy: no run.admin)
        ("projects", PROJECT, f"serviceAccount:{DEPLOYER}", "roles/run.developer"),
        # deployer: push images to this one repository (not delete them, not other repositories)
        ("artifacts repositories", "mlapi", f"serviceAccount:{DEPLOYER}", "roles/artifactregistry.writer"),
        # deployer: act as the runtime account, and only that one (not project-wide actAs)
        ("iam service-accounts", RUNTIME, f"serviceAccount:{DEPLOYER}", "roles/iam.serviceAccountUser"),
        # deployer: add models to the bucket (read, so a content-addressed upload can skip a copy)
        ("storage buckets", f"gs://{BUCKET}", f"serviceAccount:{DEPLOYER}", "roles/storage.objectCreator"),
        ("storage buckets", f"gs://{BUCKET}", f"serviceAccount:{DEPLOYER}", "roles/storage.objectViewer"),
        # runtime: read models, nothing else
        ("storage buckets", f"gs://{BUCKET}", f"serviceAccount:{RUNTIME}", "roles/storage.objectViewer"),
    }
    project_call = next(argv for argv in run.argvs() if argv[0] == "projects")
    assert "--condition=None" in project_call  # no interactive prompt on projects with conditional bindings

    without_bucket = ok(make("add-roles", **GCP))
    assert {b[0] for b in bindings(without_bucket.argvs())} == {"projects", "artifacts repositories",
                                                               "iam service-accounts"}
    assert "MODEL_BUCKET is not set: no bucket roles granted" in without_bucket.out


def test_create_key_writes_into_secrets_and_never_overwrites(make, tmp_path):
    key = tmp_path / "keys" / "gcp-key.json"
    run = ok(make("create-key", GCP_KEY_FILE=key, **GCP))
    assert run.argvs() == [["iam", "service-accounts", "keys", "create", str(key), f"--iam-account={DEPLOYER}",
                            f"--project={PROJECT}"]]
    assert key.parent.is_dir()

    key.write_text("{}")
    again = make("create-key", GCP_KEY_FILE=key, **GCP)
    assert again.returncode != 0 and "exists" in again.err
    assert again.calls == []

    dry = subprocess.run([MAKE, "-n", "-s", "-C", str(ROOT), "ENV_FILE=/dev/null", "create-key",
                          f"GCP_PROJECT_ID={PROJECT}"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert "keys create 'secrets/gcp-key.json'" in dry.stdout  # the default is in the ignored folder
    assert "umask 077" in dry.stdout  # readable by its owner only


def test_create_config_activates_the_key_in_its_own_configuration(make, tmp_path):
    key = tmp_path / "gcp-key.json"
    missing = make("create-config", GCP_KEY_FILE=key, **GCP)
    assert missing.returncode != 0 and "run make create-key first" in missing.err
    key.write_text("{}")
    assert ok(make("create-config", GCP_KEY_FILE=key, **GCP)).argvs() == [
        ["config", "configurations", "create", SA_NAME],
        ["auth", "activate-service-account", DEPLOYER, f"--key-file={key}"],
        ["config", "set", "project", PROJECT],
        ["config", "set", "run/region", "europe-west1"],
    ]


# ---- images ------------------------------------------------------------------------------------
def test_images_are_tagged_with_the_commit_and_pushed_to_artifact_registry(make):
    sha = git_sha()
    build = ok(make("build-image"))
    assert build.argvs("docker") == [["build", "--platform=linux/amd64", f"--tag=mlapi:{sha}", "."]]

    assert ok(make("conf-docker-for-gcp")).argvs() == [["auth", "configure-docker",
                                                        "europe-west1-docker.pkg.dev"]]
    push = ok(make("image-to-gcp", **GCP))
    assert push.argvs("docker") == [["tag", f"mlapi:{sha}", image(sha)], ["push", image(sha)]]
    assert "gcr.io" not in MAKEFILE.read_text()  # Container Registry is shut down

    other = ok(make("image-to-gcp", IMAGE_TAG="v1.2.0", DOCKER_PROJECT="fraud", ARTIFACT_REPOSITORY="ml",
                    GCP_REGION="us-central1", **GCP))
    assert other.argvs("docker")[-1] == ["push", f"us-central1-docker.pkg.dev/{PROJECT}/ml/fraud:v1.2.0"]


def test_run_container_passes_settings_not_secrets(make, tmp_path):
    sha = git_sha()
    plain = ok(make("run-container"))
    assert plain.argvs("docker") == [["run", "--rm", "--publish=8080:8080", "--env=PORT=8080", f"mlapi:{sha}"]]

    key = tmp_path / "key.json"
    key.write_text("{}")
    run = ok(make("run-container", OS_PORT="9000", MODELS="iris=models/iris.joblib,tickets=models/tickets.joblib",
                  LOG_LEVEL="DEBUG", MODEL_CACHE_DIR="/somewhere/local", GOOGLE_APPLICATION_CREDENTIALS=key))
    [argv] = run.argvs("docker")
    uid_gid = f"{os.getuid()}:{os.getgid()}"
    assert argv == ["run", "--rm", "--publish=9000:8080", "--env=PORT=8080",
                    "--env=MODELS=iris=models/iris.joblib,tickets=models/tickets.joblib", "--env=LOG_LEVEL=DEBUG",
                    f"--user={uid_gid}", f"--volume={key}:/run/secrets/gcp-key.json:ro",
                    "--env=GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp-key.json", f"mlapi:{sha}"]
    assert not any(arg.startswith("--env-file") for arg in argv)


# ---- Cloud Run -----------------------------------------------------------------------------------
def deploy_argv(sha: str, *extra: str, auth: str = "--no-allow-unauthenticated",
                env_flag: str = "--clear-env-vars") -> list[str]:
    return ["run", "deploy", "mlapi", f"--image={image(sha)}", *SERVICE_FLAGS, f"--service-account={RUNTIME}",
            "--memory=1Gi", "--cpu=1", "--concurrency=8", "--min-instances=0", "--max-instances=3",
            "--ingress=all", "--port=8080", auth, env_flag, *extra]


def test_deploy_is_private_by_default(make):
    sha = git_sha()
    assert ok(make("deploy", **GCP)).argvs() == [deploy_argv(sha)]
    for not_true in ("false", "yes", "1", "TRUE "):
        [argv] = ok(make("deploy", CLOUD_RUN_ALLOW_UNAUTHENTICATED=not_true, **GCP)).argvs()
        assert "--no-allow-unauthenticated" in argv and "--allow-unauthenticated" not in argv


def test_deploy_is_public_only_when_asked(make):
    [argv] = ok(make("deploy", CLOUD_RUN_ALLOW_UNAUTHENTICATED="true", **GCP)).argvs()
    assert "--allow-unauthenticated" in argv and "--no-allow-unauthenticated" not in argv


def test_deploy_settings(make):
    [argv] = ok(make("deploy", CLOUD_RUN_MEMORY="2Gi", CLOUD_RUN_CPU="2", CLOUD_RUN_CONCURRENCY="16",
                     CLOUD_RUN_MIN_INSTANCES="1", CLOUD_RUN_MAX_INSTANCES="10",
                     CLOUD_RUN_INGRESS="internal-and-cloud-load-balancing", IMAGE_TAG="v2", **GCP)).argvs()
    for flag in ("--memory=2Gi", "--cpu=2", "--concurrency=16", "--min-instances=1", "--max-instances=10",
                 "--ingress=internal-and-cloud-load-balancing", f"--image={image('v2')}"):
        assert flag in argv


def test_deploy_sets_the_server_settings_from_env_and_nothing_else(make):
    models = f"iris=models/iris.joblib,tickets:2=gs://{BUCKET}/models/{'ab' * 32}.joblib#sha256={'ab' * 32}"
    [argv] = ok(make("deploy", MODELS=models, LOG_LEVEL="DEBUG", PORT="9999", MODEL_CACHE_DIR="/x",
                     GOOGLE_APPLICATION_CREDENTIALS="secrets/gcp-key.json", **GCP)).argvs()
    # MODELS holds commas, so gcloud's list separator is changed to `|` (gcloud topic escaping)
    assert argv == deploy_argv(git_sha(), env_flag=f"--set-env-vars=^|^MODELS={models}|LOG_LEVEL=DEBUG")


def test_list_describe_and_delete(make):
    sha = git_sha()
    assert ok(make("list-cloud-run", **GCP)).argvs() == [["run", "services", "list", *SERVICE_FLAGS]]
    assert ok(make("describe-service", **GCP)).argvs() == [["run", "services", "describe", "mlapi", *SERVICE_FLAGS]]
    assert ok(make("list-revisions", **GCP)).argvs() == [["run", "revisions", "list", "--service=mlapi",
                                                          *SERVICE_FLAGS]]
    assert ok(make("delete-deployment", **GCP)).argvs() == [["run", "services", "delete", "mlapi", *SERVICE_FLAGS]]
    assert ok(make("delete-latest-gcp-image", **GCP)).argvs() == [
        ["artifacts", "docker", "images", "delete", image(sha), "--delete-tags"]]


def test_upload_model_names_the_object_after_its_sha256(make, model_file):
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    uri = f"gs://{BUCKET}/models/{digest}.joblib"
    run = ok(make("upload-model", MODEL=model_file, MODEL_BUCKET=BUCKET))
    assert run.argvs() == [["storage", "cp", "--no-clobber", str(model_file), uri]]
    assert f"MODEL_URI={uri}" in run.out.splitlines()
    assert f"MODEL_SHA256={digest}" in run.out.splitlines()


def test_deploy_model_uploads_then_rolls_a_revision_without_a_new_image(make, model_file):
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    uri = f"gs://{BUCKET}/models/{digest}.joblib"
    run = ok(make("deploy-model", MODEL=model_file, MODEL_BUCKET=BUCKET, **GCP))
    assert run.argvs() == [
        ["storage", "cp", "--no-clobber", str(model_file), uri],
        ["run", "services", "update", "mlapi", *SERVICE_FLAGS, f"--update-env-vars=MODEL_URI={uri}#sha256={digest}",
         "--remove-env-vars=MODELS"],
    ]
    assert run.argvs("docker") == []
    assert f"MODEL_URI={uri}" in run.out


def test_canary_promote_rollback(make):
    sha = git_sha()
    assert ok(make("deploy-canary", **GCP)).argvs() == [
        deploy_argv(sha, "--no-traffic", "--tag=canary"),
        ["run", "services", "update-traffic", "mlapi", *SERVICE_FLAGS, "--to-tags=canary=10"],
    ]
    assert ok(make("deploy-canary", CANARY_PERCENT="25", **GCP)).argvs()[-1][-1] == "--to-tags=canary=25"
    assert ok(make("promote", **GCP)).argvs() == [["run", "services", "update-traffic", "mlapi", *SERVICE_FLAGS,
                                                   "--to-latest"]]
    assert ok(make("rollback", REVISION="mlapi-00003-xyz", **GCP)).argvs() == [
        ["run", "services", "update-traffic", "mlapi", *SERVICE_FLAGS, "--to-revisions=mlapi-00003-xyz=100"]]


def test_deploy_passes_the_feature_store_and_database_settings(make):
    store = "postgresql+psycopg://reader@10.0.0.5:5432/features?sslmode=require&application_name=mlapi"
    predictions = "mysql+pymysql://writer@10.0.0.6/predictions?charset=utf8mb4"
    [argv] = ok(make("deploy", FEATURE_STORE_URL=store, PREDICTIONS_DB_URL=predictions, FEATURE_TABLE="customers",
                     FEATURE_ID_COLUMN="customer_id", SOURCE_TABLE="tickets", **GCP)).argvs()
    assert argv == deploy_argv(git_sha(), env_flag=(
        f"--set-env-vars=^|^FEATURE_TABLE=customers|FEATURE_ID_COLUMN=customer_id|FEATURE_STORE_URL={store}"
        f"|PREDICTIONS_DB_URL={predictions}|SOURCE_TABLE=tickets"))
    [docker] = ok(make("run-container", FEATURE_STORE_URL=store)).argvs("docker")
    assert f"--env=FEATURE_STORE_URL={store}" in docker


# ---- batch inference on Google Cloud -----------------------------------------------------------
PUSH_SA = f"{SA_NAME}-pubsub@{PROJECT}.iam.gserviceaccount.com"
PROJECT_NUMBER = "123456789012"  # what the stand-in's `gcloud projects describe` prints
PUBSUB_AGENT = f"service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
SERVICE_URL = "https://mlapi-4f6pmbdm5q-ew.a.run.app"  # what the stand-in's `run services describe` prints
DESCRIBE_URL = ["run", "services", "describe", "mlapi", *SERVICE_FLAGS, "--format=value(status.url)"]
DESCRIBE_NUMBER = ["projects", "describe", PROJECT, "--format=value(projectNumber)"]


def test_create_topic_makes_the_topic_and_a_dead_letter_topic_that_keeps_its_messages(make):
    assert ok(make("create-topic", **GCP)).argvs() == [
        ["pubsub", "topics", "create", "mlapi-batch-requests", f"--project={PROJECT}"],
        ["pubsub", "topics", "create", "mlapi-batch-requests-dead-letter", f"--project={PROJECT}"],
        # a topic without a subscription drops what is published to it; an idle one expires in 31 days
        ["pubsub", "subscriptions", "create", "mlapi-batch-requests-dead-letter-pull",
         "--topic=mlapi-batch-requests-dead-letter", f"--project={PROJECT}", "--message-retention-duration=31d",
         "--expiration-period=never"],
    ]
    other = ok(make("create-topic", PUBSUB_TOPIC="scoring", DEAD_LETTER_RETENTION="7d", **GCP)).argvs()
    assert [argv[3] for argv in other] == ["scoring", "scoring-dead-letter", "scoring-dead-letter-pull"]
    assert "--message-retention-duration=7d" in other[-1]


def test_create_pubsub_invoker_makes_the_push_identity(make):
    [argv] = ok(make("create-pubsub-invoker", **GCP)).argvs()
    assert argv[:4] == ["iam", "service-accounts", "create", f"{SA_NAME}-pubsub"]
    assert f"--project={PROJECT}" in argv

    too_long = make("create-pubsub-invoker", GCP_SERVICE_ACCOUNT_NAME="x" * 24, **GCP)  # + "-pubsub": 31
    assert too_long.returncode != 0 and "at most 30 characters" in too_long.err
    assert too_long.calls == []


def subscription_argv(url: str = SERVICE_URL, *, subscription: str = "mlapi-batch-requests-push",
                      topic: str = "mlapi-batch-requests", ack: str = "60", attempts: str = "10",
                      min_delay: str = "10s", max_delay: str = "600s") -> list[str]:
    return ["pubsub", "subscriptions", "create", subscription, f"--topic={topic}", f"--project={PROJECT}",
            f"--push-endpoint={url}/pubsub/push", f"--push-auth-service-account={PUSH_SA}",
            f"--push-auth-token-audience={url}", f"--ack-deadline={ack}",
            f"--dead-letter-topic=projects/{PROJECT}/topics/{topic}-dead-letter",
            f"--max-delivery-attempts={attempts}", f"--min-retry-delay={min_delay}",
            f"--max-retry-delay={max_delay}", "--expiration-period=never"]


def test_create_push_subscription_pushes_authenticated_with_retries_and_dead_letters(make):
    run = ok(make("create-push-subscription", **GCP))
    argvs = run.argvs()
    # the URL and the project number are asked of gcloud first
    assert argvs[:2] == [DESCRIBE_URL, DESCRIBE_NUMBER]
    [create] = [argv for argv in argvs if argv[:3] == ["pubsub", "subscriptions", "create"]]
    assert create == subscription_argv()
    grants = [argv for argv in argvs if "add-iam-policy-binding" in argv]
    assert len(argvs) == 2 + 1 + len(grants)
    assert bindings(grants) == {
        # the push identity may invoke this one service: not project-wide run.invoker
        ("run services", "mlapi", f"serviceAccount:{PUSH_SA}", "roles/run.invoker"),
        # Pub/Sub's service agent signs the push identity's tokens (projects from before April 2021)...
        ("iam service-accounts", PUSH_SA, f"serviceAccount:{PUBSUB_AGENT}", "roles/iam.serviceAccountTokenCreator"),
        # ...and dead-letters: publish to the dead-letter topic, acknowledge on the subscription
        ("pubsub topics", "mlapi-batch-requests-dead-letter", f"serviceAccount:{PUBSUB_AGENT}",
         "roles/pubsub.publisher"),
        ("pubsub subscriptions", "mlapi-batch-requests-push", f"serviceAccount:{PUBSUB_AGENT}",
         "roles/pubsub.subscriber"),
    }
    invoker = next(argv for argv in grants if argv[:2] == ["run", "services"])
    assert all(flag in invoker for flag in SERVICE_FLAGS)
    assert all(f"--project={PROJECT}" in argv for argv in grants)
    # the subscription exists before the grant on it
    assert argvs.index(create) < next(i for i, argv in enumerate(argvs)
                                      if argv[:3] == ["pubsub", "subscriptions", "add-iam-policy-binding"])


def test_create_push_subscription_settings_and_overrides(make):
    run = ok(make("create-push-subscription", SERVICE_URL="https://batch.example.com/", GCP_PROJECT_NUMBER="42",
                  PUBSUB_TOPIC="scoring", PUBSUB_SUBSCRIPTION="scoring-to-mlapi", ACK_DEADLINE="120",
                  MAX_DELIVERY_ATTEMPTS="5", MIN_RETRY_DELAY="30s", MAX_RETRY_DELAY="300s", **GCP))
    argvs = run.argvs()
    assert DESCRIBE_URL not in argvs and DESCRIBE_NUMBER not in argvs  # given, so not asked
    assert subscription_argv("https://batch.example.com", subscription="scoring-to-mlapi", topic="scoring",
                             ack="120", attempts="5", min_delay="30s", max_delay="300s") in argvs
    members = {flag for argv in argvs for flag in argv if flag.startswith("--member=")}
    assert "--member=serviceAccount:service-42@gcp-sa-pubsub.iam.gserviceaccount.com" in members
    resources = {(argv[0], argv[3]) for argv in argvs if argv[2] == "add-iam-policy-binding"}
    assert ("pubsub", "scoring-dead-letter") in resources and ("pubsub", "scoring-to-mlapi") in resources

    other_service = ok(make("create-push-subscription", DOCKER_PROJECT="fraud", GCP_REGION="us-central1",
                            env={"FAKEBIN_SERVICE_URL": "https://fraud-xyz-uc.a.run.app"}, **GCP)).argvs()
    assert other_service[0] == ["run", "services", "describe", "fraud", "--region=us-central1",
                                f"--project={PROJECT}", "--format=value(status.url)"]
    assert "--push-endpoint=https://fraud-xyz-uc.a.run.app/pubsub/push" in other_service[-3]


def test_create_push_subscription_needs_a_deployed_service_and_the_project_number(make):
    no_service = make("create-push-subscription", env={"FAKEBIN_SERVICE_URL": ""}, **GCP)
    assert no_service.returncode != 0
    assert "no URL for the Cloud Run service mlapi in europe-west1: deploy it first (make deploy), or set " \
           "SERVICE_URL=" in no_service.err
    assert "Cannot find service [mlapi]" in no_service.err  # gcloud's own reason is shown too
    assert no_service.argvs() == [DESCRIBE_URL]  # nothing granted, nothing created

    no_number = make("create-push-subscription", env={"FAKEBIN_PROJECT_NUMBER": ""}, **GCP)
    assert no_number.returncode != 0
    assert f"no project number for {PROJECT}: check gcloud's account (make check-gcp-login), or set " \
           "GCP_PROJECT_NUMBER=" in no_number.err
    assert no_number.argvs() == [DESCRIBE_URL, DESCRIBE_NUMBER]


def batch_job_argv(sha: str, args: str = "batch-predict,--from-store,--to-db", *, tasks: str = "4",
                   parallelism: str = "0", retries: str = "3", timeout: str = "3600s", memory: str = "2Gi",
                   cpu: str = "2", env_flag: str = "--clear-env-vars", job: str = "mlapi-batch") -> list[str]:
    return ["run", "jobs", "deploy", job, f"--image={image(sha)}", *SERVICE_FLAGS, f"--service-account={RUNTIME}",
            "--command=mlapi", f"--args={args}", f"--tasks={tasks}", f"--parallelism={parallelism}",
            f"--max-retries={retries}", f"--task-timeout={timeout}", f"--memory={memory}", f"--cpu={cpu}", env_flag]


def test_deploy_batch_job_runs_batch_predict_from_the_store_to_the_database(make):
    sha = git_sha()
    default = ok(make("deploy-batch-job", **GCP))
    assert default.argvs() == [batch_job_argv(sha)]
    assert default.argvs("docker") == []  # the image deploy uses, already pushed
    # SQLite on Cloud Run is a file inside each task: said, not refused
    assert "warning: FEATURE_STORE_URL is unset (so SQLite)" in default.err
    assert "warning: PREDICTIONS_DB_URL is unset (so SQLite)" in default.err

    store = "postgresql+psycopg://reader@10.0.0.5/features?sslmode=require"
    predictions = "postgresql+psycopg://writer@10.0.0.5/predictions"
    models = f"iris=models/iris.joblib,tickets:2=gs://{BUCKET}/models/{'ab' * 32}.joblib"
    configured = ok(make("deploy-batch-job", BATCH_MODEL="tickets:2", BATCH_TASKS="10", BATCH_PARALLELISM="5",
                         BATCH_MAX_RETRIES="1", BATCH_TASK_TIMEOUT="2h", BATCH_MEMORY="4Gi", BATCH_CPU="4",
                         BATCH_JOB_NAME="nightly-scoring", IMAGE_TAG="v3", MODELS=models, FEATURE_STORE_URL=store,
                         PREDICTIONS_DB_URL=predictions, PORT="9999", MODEL_CACHE_DIR="/x", **GCP))
    assert configured.argvs() == [batch_job_argv(
        "v3", "batch-predict,--from-store,--to-db,--model=tickets:2", tasks="10", parallelism="5", retries="1",
        timeout="2h", memory="4Gi", cpu="4", job="nightly-scoring",
        env_flag=f"--set-env-vars=^|^MODELS={models}|FEATURE_STORE_URL={store}|PREDICTIONS_DB_URL={predictions}")]
    assert "warning" not in configured.err

    sqlite = make("deploy-batch-job", PREDICTIONS_DB_URL="sqlite:////tmp/p.db", FEATURE_STORE_URL=store, **GCP)
    assert "warning: PREDICTIONS_DB_URL is SQLite: on Cloud Run that is a file inside each task's container" \
           in ok(sqlite).err
    assert "FEATURE_STORE_URL" not in sqlite.err

    assert ok(make("deploy-batch-job", DOCKER_PROJECT="fraud", **GCP)).argvs()[0][3] == "fraud-batch"


def test_run_batch_job_executes_and_waits(make):
    assert ok(make("run-batch-job", **GCP)).argvs() == [["run", "jobs", "execute", "mlapi-batch", *SERVICE_FLAGS,
                                                         "--wait"]]
    assert ok(make("run-batch-job", BATCH_JOB_NAME="nightly", **GCP)).argvs()[0][3] == "nightly"


# ---- local development targets ---------------------------------------------------------------
@pytest.fixture
def stand_in_venv(tmp_path):
    """A virtualenv whose python and mlapi are recorders, already installed (fresh stamps)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "mlapi"):
        (venv / "bin" / tool).symlink_to(FAKEBIN / "record")
    later = time.time() + 3600  # newer than setup.py and constraints.txt: nothing to install
    for stamp in (".installed-gcs", ".installed-dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    return venv


def test_run_serves_the_demo_models_with_uwsgi_unless_told_otherwise(make, stand_in_venv, tmp_path):
    watch = {"FAKEBIN_ENV": "MODELS,MODEL_URI,PORT"}
    run = ok(make("run", VENV=stand_in_venv, env=watch))
    assert [(c["tool"], c["argv"]) for c in run.calls] == [
        ("mlapi", ["demo", "--out", "models"]),
        ("mlapi", ["serve", "--server", "uwsgi", "--port", "8080"]),
    ]
    assert run.calls[-1]["env"]["MODELS"] == "iris=models/iris.joblib,tickets=models/tickets.joblib"

    dotenv = tmp_path / "my.env"
    dotenv.write_text("MODELS=mine=models/mine.joblib\nPORT=9090\n")
    mine = ok(make("run", VENV=stand_in_venv, ENV_FILE=dotenv, env=watch))
    assert mine.calls[-1]["argv"][-1] == "9090"
    assert mine.calls[-1]["env"]["MODELS"] == "mine=models/mine.joblib"

    # MODEL_URI alone must not be hidden behind the demo MODELS
    single = ok(make("run", VENV=stand_in_venv, env={**watch, "MODEL_URI": "models/other.joblib"}))
    assert not single.calls[-1]["env"]["MODELS"]
    assert single.calls[-1]["env"]["MODEL_URI"] == "models/other.joblib"


def test_run_creates_the_virtualenv_and_installs_with_constraints(tmp_path):
    venv = tmp_path / "fresh-venv"
    dry = subprocess.run([MAKE, "-n", "-C", str(ROOT), "ENV_FILE=/dev/null", "run", f"VENV={venv}"],
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    expected = [f"-m venv {venv}", f"{venv}/bin/python -m pip install -c constraints.txt -e '.[gcs]'",
                f"{venv}/bin/mlapi demo --out models", f"{venv}/bin/mlapi serve --server uwsgi --port 8080"]
    positions = [next(i for i, line in enumerate(lines) if wanted in line) for wanted in expected]
    assert positions == sorted(positions), dry.stdout
    assert re.search(r"python3(\.11)? -m venv", lines[positions[0]]), lines[positions[0]]


def test_test_target_runs_pytest_without_the_settings_from_env(make, stand_in_venv, tmp_path):
    dotenv = tmp_path / "my.env"
    dotenv.write_text("MODELS=mine=gs://b/m.joblib\nGCP_PROJECT_ID=p\n")
    run = ok(make("test", VENV=stand_in_venv, ENV_FILE=dotenv, PYTEST_ARGS="-x -k api",
                  env={"FAKEBIN_ENV": "MODELS,GCP_PROJECT_ID,PORT,CI", "CI": "true"}))
    [pytest_call] = [c for c in run.calls if c["tool"] == "python"]
    assert pytest_call["argv"] == ["-m", "pytest", "-q", "tests", "-x", "-k", "api"]
    assert pytest_call["env"] == {"MODELS": None, "GCP_PROJECT_ID": None, "PORT": None, "CI": "true"}


# ---- feature store aliases (seed 000's add_data_point / import_data_to_fs), run for real ---------
@pytest.fixture
def real_venv(tmp_path):
    """A virtualenv holding this checkout's real mlapi, already installed (fresh stamps)."""
    venv = tmp_path / "real-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "mlapi").symlink_to(VENV_BIN / "mlapi")
    later = time.time() + 3600
    for stamp in (".installed-gcs", ".installed-dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    return venv


def sqlite_rows(path: Path, table: str) -> list[dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return []
            return [dict(row._mapping) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]
    finally:
        engine.dispose()


TRICKY_TEXT = """I was charged "twice" for `order` 42 -- can't log in; echo pwned"""


def test_add_data_point_writes_straight_into_the_store_without_a_source_database(make, real_venv, tmp_path):
    store = tmp_path / "features.db"
    dotenv = tmp_path / "my.env"
    dotenv.write_text(f"FEATURE_STORE_URL=sqlite:///{store}\n")
    first = ok(make("add-data-point", VENV=real_venv, ENV_FILE=dotenv, TEXT=TRICKY_TEXT))
    assert first.out.strip().splitlines()[-1] == "1"
    second = ok(make("add-data-point", VENV=real_venv, ENV_FILE=dotenv, TEXT="-starts with a dash"))
    assert second.out.strip().splitlines()[-1] == "2"
    rows = sqlite_rows(store, "features")
    assert [(row["id"], row["text"]) for row in rows] == [("1", TRICKY_TEXT), ("2", "-starts with a dash")]


def test_add_data_point_then_import_data_to_fs_moves_the_record_into_the_store(make, real_venv, tmp_path):
    source, store = tmp_path / "mlapi.store.database", tmp_path / "features.db"
    settings = {"SOURCE_DB_URL": f"sqlite:///{source}", "FEATURE_STORE_URL": f"sqlite:///{store}"}
    added = ok(make("add-data-point", VENV=real_venv, TEXT="I cannot log in since the update", env=settings))
    assert added.out.strip().splitlines()[-1] == "1"
    assert [(r["id"], r["text"]) for r in sqlite_rows(source, "records")] == [(1, "I cannot log in since the update")]
    assert sqlite_rows(store, "features") == []  # not in the store until it is imported

    imported = ok(make("import-data-to-fs", VENV=real_venv, env=settings))
    assert "synced 1 rows into features" in imported.out
    assert [(str(r["id"]), r["text"]) for r in sqlite_rows(store, "features")] == [
        ("1", "I cannot log in since the update")]


def test_import_data_to_fs_imports_a_file(make, real_venv, tmp_path):
    store = tmp_path / "features.db"
    rows = tmp_path / "my rows.csv"  # a space in the name
    rows.write_text("id,text\n7,refund please\n8,the app crashes\n")
    run = ok(make("import-data-to-fs", VENV=real_venv, FILE=rows, FEATURE_STORE_URL=f"sqlite:///{store}"))
    assert "imported 2 rows into features" in run.out
    assert [(r["id"], r["text"]) for r in sqlite_rows(store, "features")] == [("7", "refund please"),
                                                                              ("8", "the app crashes")]


def test_feature_store_aliases_run_mlapi_features(make, stand_in_venv):
    assert [c["argv"] for c in ok(make("add-data-point", VENV=stand_in_venv, TEXT="hello")).calls] == [
        ["features", "add", "--", "hello"]]
    assert [c["argv"] for c in ok(make("import-data-to-fs", VENV=stand_in_venv)).calls] == [["features", "import"]]
    assert [c["argv"] for c in ok(make("import-data-to-fs", VENV=stand_in_venv, FILE="data/a b.csv")).calls] == [
        ["features", "import", "data/a b.csv"]]

    for empty in ("", "  "):
        missing = make("add-data-point", VENV=stand_in_venv, TEXT=empty)
        assert missing.returncode != 0
        assert 'TEXT is not set: run make add-data-point TEXT="the record\'s text"' in missing.err
        assert missing.calls == []
    # said before a missing virtualenv is created and installed
    fresh = stand_in_venv.parent / "fresh-venv"
    unset = make("add-data-point", VENV=fresh)
    assert unset.returncode != 0 and "TEXT is not set" in unset.err
    assert not fresh.exists()


@pytest.fixture
def node_project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(MAKEFILE, folder / "Makefile")
    return folder


def test_node_deps_installs_newman_with_npm_ci_when_it_can(make, node_project, tmp_path):
    # no package.json: nothing to do
    assert ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project)).calls == []
    (node_project / "package.json").write_text('{"devDependencies": {"newman": "^6.2.2"}}')
    (node_project / "package-lock.json").write_text("{}")
    with_npm = ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project))
    assert with_npm.argvs("npm") == [["ci", "--no-audit", "--no-fund"]]

    empty = tmp_path / "empty-path"
    empty.mkdir()
    without_npm = ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project, path=str(empty)))
    assert "npm not found: skipping newman" in without_npm.out
    assert without_npm.calls == []

    (node_project / "node_modules").mkdir()
    (node_project / "node_modules" / ".package-lock.json").write_text("{}")
    later = time.time() + 60
    os.utime(node_project / "node_modules" / ".package-lock.json", (later, later))
    assert ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project)).calls == []


def test_ci_entry_point_runs_make_test():
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text and re.search(r"^make test$", text, flags=re.M)


# ---- the real Cloud SDK validates every recorded gcloud command ---------------------------------
def scenarios(scratch: Path, model: Path) -> list[tuple[str, dict]]:
    """One make invocation per variant of every target that calls gcloud."""
    key = scratch / "gcp-key.json"
    key.write_text('{"type": "service_account"}')
    models = f"iris=models/iris.joblib,tickets:2=gs://{BUCKET}/models/{'cd' * 32}.joblib#sha256={'cd' * 32}"
    return [
        ("check-gcp-login", {}),
        ("enable-apis", GCP),
        ("create-service-account", GCP),
        ("create-repository", GCP),
        ("create-bucket", {**GCP, "MODEL_BUCKET": BUCKET}),
        ("add-roles", {**GCP, "MODEL_BUCKET": BUCKET}),
        ("create-key", {**GCP, "GCP_KEY_FILE": scratch / "new" / "gcp-key.json"}),
        ("create-config", {**GCP, "GCP_KEY_FILE": key}),
        ("conf-docker-for-gcp", {}),
        ("deploy", GCP),
        ("deploy", {**GCP, "CLOUD_RUN_ALLOW_UNAUTHENTICATED": "true", "CLOUD_RUN_INGRESS": "internal",
                    "CLOUD_RUN_MEMORY": "2Gi", "CLOUD_RUN_CPU": "2", "CLOUD_RUN_MIN_INSTANCES": "1"}),
        ("deploy", {**GCP, "MODELS": models, "LOG_LEVEL": "DEBUG", "STRICT_SKLEARN_VERSION": "1"}),
        ("deploy", {**GCP, "MODEL_URI": f"gs://{BUCKET}/models/{'ef' * 32}.joblib", "MODEL_SHA256": "ef" * 32}),
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


def replay(gcloud: str, argv: list[str], scratch: Path) -> tuple[list[str], str | int, str]:
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "CLOUDSDK_CONFIG": str(home / "gcloud"),      # empty: no account, no project
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",          # never wait for an answer
           "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",  # do not probe for a GCE metadata server
           "DOCKER_CONFIG": str(home / "docker")}         # configure-docker writes here, not ~/.docker
    try:
        done = subprocess.run([gcloud, *argv], env=env, cwd=home, capture_output=True, text=True, timeout=90)
        return argv, done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as timeout:
        partial = (timeout.stdout or b"") + (timeout.stderr or b"")
        return argv, "timeout", partial.decode(errors="replace") if isinstance(partial, bytes) else partial


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
    problems = []
    for argv, returncode, output in results:
        shown = "gcloud " + " ".join(argv)
        if ARGUMENT_ERROR.search(output):
            problems.append(f"{shown}\n  argument error:\n{output.strip()}")
        elif returncode == "timeout":
            continue  # stuck on something other than its arguments (e.g. the network): not our concern
        elif returncode != 0 and not any(expected in output for expected in EXPECTED_FAILURES):
            problems.append(f"{shown}\n  failed ({returncode}) for an unexpected reason:\n{output.strip()}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("env_file, settings, systems, rounds", [
    ("", [], "mlapi,mlapi_batch,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop", "3"),
    ("PEER_SYSTEMS=\nPEER_ROUNDS=\n", [],
     "mlapi,mlapi_batch,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop", "3"),
    ("", ["PEER_SYSTEMS=mlapi,floor_uwsgi_raw", "PEER_ROUNDS=1"], "mlapi,floor_uwsgi_raw", "1"),
], ids=["defaults", "empty-in-env-file-as-in-example-env", "chosen"])
def test_bench_peers_runs_the_peer_script_with_both_mlapi_modes_then_reports(tmp_path, env_file, settings, systems,
                                                                            rounds):
    dotenv = tmp_path / ".env"
    dotenv.write_text(env_file)
    dry = subprocess.run([MAKE, "-n", "-s", "-C", str(ROOT), f"ENV_FILE={dotenv}", "bench-peers", *settings],
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert dry.returncode == 0, dry.stderr
    script = dry.stdout.replace("\\\n", " ")
    assert "ANCHORS_PROFILE=mlapi" in script and f"ANCHORS_SYSTEMS={systems} " in script
    assert f"ANCHORS_ROUNDS={rounds} " in script
    assert f"ANCHORS_OUT={ROOT}/bench/results/peers.json" in script and " bench/peers/run.sh" in script
    assert "bench/peers_report.py bench/results/peers.json" in script
    # bench/results/ is git-ignored: a fresh clone must create it before the peer script writes there
    assert "mkdir -p bench/results" in script and script.index("mkdir -p bench/results") < script.index("run.sh")
