"""Setting up a Google Cloud project with make: checking the login, enabling APIs, the service
accounts and their least-privilege roles, the key and the gcloud configuration that uses it,
the Artifact Registry repository and the model bucket."""
from __future__ import annotations

from conftest import ROOT
from makefile_helpers import (BUCKET, DEPLOYER, GCP, PROJECT, RUNTIME, SA_NAME, bindings, dry_run,  # noqa: F401
                              make, ok)


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

    dry = dry_run(tmp_path, "-s", "-C", str(ROOT), "ENV_FILE=/dev/null", "create-key", f"GCP_PROJECT_ID={PROJECT}")
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
