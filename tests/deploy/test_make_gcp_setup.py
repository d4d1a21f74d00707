"""Setting up a Google Cloud project with make: checking the login, enabling APIs, the service
accounts and their least-privilege roles, acting as the deployer (impersonation by default, a
key as the fallback) and the gcloud configuration that does it, the Artifact Registry
repository (immutable tags) and the model bucket."""
from __future__ import annotations

from conftest import ROOT
from makefile_helpers import (BUCKET, DEPLOYER, GCP, PROJECT, RUNTIME, SA_NAME, bindings, dry_run,  # noqa: F401
                              make, ok)


def test_check_gcp_login_names_the_account_and_whether_it_is_the_deployer(make):
    as_deployer = ok(make("check-gcp-login", env={"FAKEBIN_ACCOUNT": DEPLOYER, "FAKEBIN_PROJECT": PROJECT}, **GCP))
    assert f"gcloud account: {DEPLOYER}" in as_deployer.out
    assert f"gcloud project: {PROJECT}" in as_deployer.out
    assert "this is the deployer service account" in as_deployer.out
    assert as_deployer.argvs() == [["config", "get-value", "account"], ["config", "get-value", "project"],
                                   ["config", "get-value", "auth/impersonate_service_account"]]

    impersonating = ok(make("check-gcp-login", env={"FAKEBIN_ACCOUNT": "owner@example.com",
                                                    "FAKEBIN_IMPERSONATE": DEPLOYER, "FAKEBIN_PROJECT": PROJECT}, **GCP))
    assert "gcloud account: owner@example.com" in impersonating.out
    assert f"acting as: {DEPLOYER} (impersonated)" in impersonating.out
    assert "this is the deployer service account (impersonated)" in impersonating.out

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
         "iamcredentials.googleapis.com",  # impersonation: short-lived deployer tokens
         "storage.googleapis.com", "pubsub.googleapis.com",
         "secretmanager.googleapis.com", "redis.googleapis.com", "compute.googleapis.com",  # secrets, Memorystore, its VPC
         f"--project={PROJECT}"]]


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
         f"--project={PROJECT}", "--description=Images of mlapi",
         "--immutable-tags"]]  # a pushed tag always names the same image: a rebuild cannot replace it
    assert ok(make("create-bucket", MODEL_BUCKET=BUCKET, **GCP)).argvs() == [
        ["storage", "buckets", "create", f"gs://{BUCKET}", f"--project={PROJECT}", "--location=europe-west1",
         "--uniform-bucket-level-access", "--public-access-prevention"]]



def test_add_roles_grants_exactly_the_least_privilege_roles(make):
    run = ok(make("add-roles", MODEL_BUCKET=BUCKET, DEPLOY_AUTH="key", **GCP))
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

    without_bucket = ok(make("add-roles", DEPLOY_AUTH="key", **GCP))
    assert {b[0] for b in bindings(without_bucket.argvs())} == {"projects", "artifacts repositories",
                                                               "iam service-accounts"}
    assert "MODEL_BUCKET is not set: no bucket roles granted" in without_bucket.out


def granted(run) -> set:
    return bindings([argv for argv in run.argvs() if "add-iam-policy-binding" in argv])


def test_add_roles_lets_only_you_impersonate_the_deployer_by_default(make):
    run = ok(make("add-roles", env={"FAKEBIN_ACCOUNT": "owner@example.com"}, **GCP))
    impersonation = ("iam service-accounts", DEPLOYER, "user:owner@example.com", "roles/iam.serviceAccountTokenCreator")
    # on the deployer only, to one principal: never project-wide token creation
    assert [b for b in granted(run) if b[3] == "roles/iam.serviceAccountTokenCreator"] == [impersonation]
    assert ["config", "get-value", "account"] in run.argvs()  # who "you" are: the account gcloud uses
    as_ci = ok(make("add-roles", env={"FAKEBIN_ACCOUNT": f"ci@{PROJECT}.iam.gserviceaccount.com"}, **GCP))
    assert ("iam service-accounts", DEPLOYER, f"serviceAccount:ci@{PROJECT}.iam.gserviceaccount.com",
            "roles/iam.serviceAccountTokenCreator") in granted(as_ci)
    team = ok(make("add-roles", DEPLOYER_IMPERSONATOR="group:deployers@example.com", **GCP))
    assert ("iam service-accounts", DEPLOYER, "group:deployers@example.com",
            "roles/iam.serviceAccountTokenCreator") in granted(team)
    assert ["config", "get-value", "account"] not in team.argvs()  # named, so not asked
    logged_out = make("add-roles", **GCP)
    assert logged_out.returncode != 0 and "DEPLOYER_IMPERSONATOR=user:" in logged_out.err
    with_key = ok(make("add-roles", DEPLOY_AUTH="key", env={"FAKEBIN_ACCOUNT": "owner@example.com"}, **GCP))
    assert not [b for b in granted(with_key) if b[3] == "roles/iam.serviceAccountTokenCreator"]


def test_create_config_impersonates_the_deployer_without_a_key(make, tmp_path):
    run = ok(make("create-config", env={"FAKEBIN_ACCOUNT": "owner@example.com"}, **GCP))
    assert run.argvs() == [
        ["config", "get-value", "account"],  # asked before the new configuration, which has no account yet
        ["config", "configurations", "create", SA_NAME],
        ["config", "set", "account", "owner@example.com"],
        ["config", "set", "auth/impersonate_service_account", DEPLOYER],
        ["config", "set", "project", PROJECT],
        ["config", "set", "run/region", "europe-west1"],
    ]
    assert not any("activate-service-account" in argv or "keys" in argv for argv in run.argvs())
    logged_out = make("create-config", **GCP)
    assert logged_out.returncode != 0 and "gcloud auth login" in logged_out.err
    unknown = make("create-config", DEPLOY_AUTH="token", **GCP)
    assert unknown.returncode != 0 and "use impersonate (the default) or key" in unknown.err and not unknown.calls


def test_no_key_is_created_unless_asked_for(make, tmp_path):
    key = tmp_path / "keys" / "gcp-key.json"
    refused = make("create-key", GCP_KEY_FILE=key, **GCP)
    assert refused.returncode != 0 and "no key is needed" in refused.err and "DEPLOY_AUTH=key" in refused.err
    assert refused.calls == [] and not key.parent.exists()


def test_create_key_writes_into_secrets_and_never_overwrites(make, tmp_path):
    key = tmp_path / "keys" / "gcp-key.json"
    run = ok(make("create-key", GCP_KEY_FILE=key, DEPLOY_AUTH="key", **GCP))
    assert run.argvs() == [["iam", "service-accounts", "keys", "create", str(key), f"--iam-account={DEPLOYER}",
                            f"--project={PROJECT}"]]
    assert key.parent.is_dir()

    key.write_text("{}")
    again = make("create-key", GCP_KEY_FILE=key, DEPLOY_AUTH="key", **GCP)
    assert again.returncode != 0 and "exists" in again.err
    assert again.calls == []

    dry = dry_run(tmp_path, "-s", "-C", str(ROOT), "ENV_FILE=/dev/null", "create-key", f"GCP_PROJECT_ID={PROJECT}",
                  "DEPLOY_AUTH=key")
    assert "keys create 'secrets/gcp-key.json'" in dry.stdout  # the default is in the ignored folder
    assert "umask 077" in dry.stdout  # readable by its owner only


def test_create_config_activates_the_key_in_its_own_configuration(make, tmp_path):
    key = tmp_path / "gcp-key.json"
    missing = make("create-config", GCP_KEY_FILE=key, DEPLOY_AUTH="key", **GCP)
    assert missing.returncode != 0 and "run make create-key DEPLOY_AUTH=key first" in missing.err
    key.write_text("{}")
    assert ok(make("create-config", GCP_KEY_FILE=key, DEPLOY_AUTH="key", **GCP)).argvs() == [
        ["config", "configurations", "create", SA_NAME],
        ["auth", "activate-service-account", DEPLOYER, f"--key-file={key}"],
        ["config", "set", "project", PROJECT],
        ["config", "set", "run/region", "europe-west1"],
    ]
