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

from conftest import ROOT, VENV_BIN

MAKEFILE = ROOT / "Makefile"
FAKEBIN = Path(__file__).parent / "fakebin"
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
        pytest.skip("GNU make is not installed")
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
                   "promote", "rollback", "run", "test", "venv"):
        assert target in described, f"{target} is missing from make help"


def test_example_env_lists_every_setting():
    example = (ROOT / "example.env").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, flags=re.M))
    makefile_settings = set(re.findall(r"^([A-Z][A-Z0-9_]*) \?=", makefile_text(), flags=re.M)) - {"ENV_FILE"}
    server_settings = {"PORT", "MODELS", "MODEL_URI", "MODEL_NAME", "MODEL_SHA256", "MODEL_CACHE_DIR",
                       "STRICT_SKLEARN_VERSION", "MAX_REQUEST_BYTES", "PREDICTION_CACHE_SIZE", "LOG_LEVEL",
                       "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"}
    missing = (makefile_settings | server_settings | {"IMAGE_TAG"}) - listed
    assert not missing, f"example.env does not mention {sorted(missing)}"
    for line in example.splitlines():
        assert not re.match(r'^#? ?[A-Z_]+=["\']', line), f"quotes would reach make literally: {line}"


# ---- variables a target needs ------------------------------------------------------------------
NEEDS_PROJECT = ["enable-apis", "create-service-account", "create-repository", "create-bucket", "add-roles",
                 "create-key", "create-config", "image-to-gcp", "deploy", "list-cloud-run", "describe-service",
                 "list-revisions", "deploy-model", "deploy-canary", "promote", "rollback",
                 "delete-deployment", "delete-latest-gcp-image"]


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
         "storage.googleapis.com", f"--project={PROJECT}"]]


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
        pytest.skip("the Google Cloud SDK (gcloud) is not installed, so the recorded gcloud commands cannot be "
                    "validated; this check skips even under CI=true, as the SDK is an optional download")
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
