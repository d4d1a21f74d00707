"""Cloud Run with make: deploy (private unless asked), the settings a revision gets, models
uploaded by content and rolled out without a new image, canary, promote and rollback."""
from __future__ import annotations

import hashlib

from makefile_helpers import (BUCKET, GCP, PROJECT, RUNTIME, SA_NAME, SERVICE_FLAGS, git_sha, image,  # noqa: F401
                              make, model_file, ok, server_settings_travelling)

PUSH_SA = f"{SA_NAME}-pubsub@{PROJECT}.iam.gserviceaccount.com"
# The push token's audience make deploy and make create-push-subscription agree on (no URL needed).
PUSH_AUDIENCE = f"{PROJECT}/europe-west1/mlapi/pubsub/push"
STARTUP_PROBE = ("--startup-probe=httpGet.path=/startupz,httpGet.port=8080,periodSeconds=2,timeoutSeconds=2,"
                 "failureThreshold=120")


def liveness_probe(failures: int = 4) -> str:
    return (f"--liveness-probe=httpGet.path=/healthz,httpGet.port=8080,periodSeconds=30,timeoutSeconds=5,"
            f"failureThreshold={failures}")


def service_env(**settings: str) -> str:
    """The --set-env-vars flag deploy builds: .env's settings in SERVER_SETTINGS' order, plus the
    worker count and the push account and audience when .env leaves them out."""
    settings = {"WEB_CONCURRENCY": "1", "PUSH_SERVICE_ACCOUNT": PUSH_SA, "PUSH_AUDIENCE": PUSH_AUDIENCE,
                "TRUSTED_PROXY_HOPS": "1", **settings}
    ordered = [f"{name}={settings[name]}" for name in server_settings_travelling() if name in settings]
    return "--set-env-vars=^|^" + "|".join(ordered)


def deploy_argv(sha: str, *extra: str, auth: str = "--no-allow-unauthenticated",
                env_flag: str | None = None, secrets: tuple[str, ...] = ("--clear-secrets", "--clear-network")
                ) -> list[str]:
    """secrets: the Secret Manager and network flags (none by default: both cleared)."""
    return ["run", "deploy", "mlapi", f"--image={image(sha)}", *SERVICE_FLAGS, f"--service-account={RUNTIME}",
            "--memory=1Gi", "--cpu=1", "--concurrency=1", "--timeout=65", "--execution-environment=gen2",
            "--cpu-boost", STARTUP_PROBE, liveness_probe(), "--min-instances=0", "--max-instances=3",
            "--ingress=all", "--port=8080", auth, env_flag or service_env(),
            f"--add-custom-audiences={PUSH_AUDIENCE}", *secrets, *extra]


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
    assert argv == deploy_argv(git_sha(), env_flag=service_env(MODELS=models, LOG_LEVEL="DEBUG"))


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


def test_upload_model_keeps_a_skops_files_suffix(make, tmp_path):
    """The server picks an artifact's format by its name: a .skops file uploaded as .joblib
    would be unpickled (and refused), so the object keeps .skops."""
    skops_file = tmp_path / "model.skops"
    skops_file.write_bytes(b"PK\x03\x04 not really a model")
    digest = hashlib.sha256(skops_file.read_bytes()).hexdigest()
    uri = f"gs://{BUCKET}/models/{digest}.skops"
    run = ok(make("upload-model", MODEL=skops_file, MODEL_BUCKET=BUCKET))
    assert run.argvs() == [["storage", "cp", "--no-clobber", str(skops_file), uri]]


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
    assert argv == deploy_argv(git_sha(), env_flag=service_env(
        FEATURE_TABLE="customers", FEATURE_ID_COLUMN="customer_id", FEATURE_STORE_URL=store,
        PREDICTIONS_DB_URL=predictions, SOURCE_TABLE="tickets"))
    [docker] = ok(make("run-container", FEATURE_STORE_URL=store)).argvs("docker")
    assert f"--env=FEATURE_STORE_URL={store}" in docker


def test_the_docs_token_reaches_the_container_and_cloud_run_only_through_secret_manager(make, tmp_path):
    token_file = tmp_path / "docs-token"
    token_file.write_text("s3cret\n")
    run = ok(make("run-container", API_DOCS_TOKEN="s3cret", API_DOCS_TOKEN_FILE=str(token_file),
                  env={"FAKEBIN_ENV": "API_DOCS_TOKEN"}))
    [call] = [call for call in run.calls if call["tool"] == "docker"]
    # the value travels in docker's environment, not on its command line
    assert "--env=API_DOCS_TOKEN" in call["argv"] and call["env"]["API_DOCS_TOKEN"] == "s3cret"
    assert not any("s3cret" in arg for arg in call["argv"])
    assert f"--volume={token_file}:/run/secrets/api-docs-token:ro" in call["argv"]
    assert "--env=API_DOCS_TOKEN_FILE=/run/secrets/api-docs-token" in call["argv"]
    # Cloud Run: the secret make create-secrets stores, pinned to its newest version (7, the stand-in's)
    for target in ("deploy", "deploy-canary"):
        deployed = ok(make(target, API_DOCS_TOKEN="s3cret", **GCP))
        argv = [argv for argv in deployed.argvs() if argv[:2] == ["run", "deploy"]][0]
        assert "--set-secrets=API_DOCS_TOKEN=mlapi-api-docs-token:7" in argv
        assert not any("s3cret" in arg for arg in argv) and "s3cret" not in deployed.out + deployed.err
    # a secret named by hand, as before make create-secrets existed
    [*_, argv] = ok(make("deploy", API_DOCS_TOKEN_SECRET="api-docs-token", **GCP)).argvs()
    assert argv == deploy_argv(git_sha(), secrets=("--set-secrets=API_DOCS_TOKEN=api-docs-token:7", "--clear-network"))
