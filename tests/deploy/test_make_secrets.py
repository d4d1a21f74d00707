"""Secrets and Memorystore with make: create-secrets stores the secret settings in Secret Manager
(values on stdin, never on a command line or in make's output) and lets the runtime account read
them; deploy, deploy-canary and deploy-batch-job pass them with --set-secrets pinned to a version,
never as plain variables; create-redis and the Direct VPC egress flags that reach it."""
from __future__ import annotations

import pytest

from makefile_helpers import DEPLOYER, GCP, PROJECT, RUNTIME, git_sha, make, ok  # noqa: F401
from test_make_cloud_run import deploy_argv, service_env

ADMIN_TOKEN = "adm1n-t0ken,with=odd|chars"
STORE_WITH_PASSWORD = "postgresql+psycopg://reader:pa55word@10.0.0.5/features?sslmode=require"
REDIS_WITH_PASSWORD = "redis://:r3dis-auth@10.0.0.3:6379/0"
ENV = {"FAKEBIN_ACCOUNT": "owner@example.com"}


def secret_calls(run, verb: tuple[str, ...]) -> list[dict]:
    return [call for call in run.calls if call["tool"] == "gcloud" and tuple(call["argv"][:len(verb)]) == verb]


def grants(name: str) -> list[list[str]]:
    return [["secrets", "add-iam-policy-binding", name, f"--project={PROJECT}", f"--member=serviceAccount:{member}",
             f"--role=roles/secretmanager.{role}", "--condition=None", "--format=none"]
            for member, role in ((RUNTIME, "secretAccessor"), (DEPLOYER, "viewer"))]


def test_create_secrets_stores_each_secret_on_stdin_and_lets_the_runtime_account_read_it(make, tmp_path):
    keys = tmp_path / "api-keys.txt"
    keys.write_text("# the billing team\nkey-one\nkey-two\n")
    run = ok(make("create-secrets", ADMIN_TOKEN=ADMIN_TOKEN, FEATURE_STORE_URL=STORE_WITH_PASSWORD,
                  PREDICTIONS_DB_URL="postgresql+psycopg://writer@10.0.0.5/predictions",  # no password: not a secret
                  API_KEYS_FILE=str(keys), REDIS_URL_SECRET="shared-redis-url", env=ENV, echo=True, **GCP))
    stored = {"mlapi-admin-token": ADMIN_TOKEN, "mlapi-feature-store-url": STORE_WITH_PASSWORD,
              "mlapi-api-keys-file": keys.read_text()}
    assert run.argvs() == [
        *[argv for name in stored for argv in (
            ["secrets", "describe", name, f"--project={PROJECT}", "--format=value(name)"],
            ["secrets", "create", name, f"--project={PROJECT}", "--replication-policy=automatic", "--labels=app=mlapi",
             "--format=none"],
            ["secrets", "versions", "access", "latest", f"--secret={name}", f"--project={PROJECT}"],
            ["secrets", "versions", "add", name, f"--project={PROJECT}", "--data-file=-", "--format=none"])],
        # a secret named by hand (REDIS_URL_SECRET) is not stored here, but read by the service all the same
        *[grant for name in ("mlapi-admin-token", "mlapi-feature-store-url", "shared-redis-url", "mlapi-api-keys-file")
          for grant in grants(name)],
    ]
    # each value went to gcloud on stdin, byte for byte; none on a command line or in make's output
    assert {call["argv"][3]: call["stdin"] for call in secret_calls(run, ("secrets", "versions", "add"))} == stored
    for value in (ADMIN_TOKEN, "pa55word", "key-one"):
        assert not any(value in arg for argv in run.argvs() for arg in argv)
        assert value not in run.out + run.err
    assert "gcloud secrets versions add mlapi-admin-token --data-file=- (ADMIN_TOKEN, on stdin)" in run.out


def test_create_secrets_is_idempotent(make):
    # the secret exists and its newest version holds the value: nothing created, no version added
    same = ok(make("create-secrets", ADMIN_TOKEN=ADMIN_TOKEN, **GCP,
                   env={**ENV, "FAKEBIN_SECRETS_EXIST": "1", "FAKEBIN_SECRET_PAYLOAD": ADMIN_TOKEN}))
    assert secret_calls(same, ("secrets", "create")) == [] and secret_calls(same, ("secrets", "versions", "add")) == []
    assert "mlapi-admin-token: unchanged (ADMIN_TOKEN)" in same.out
    assert [argv for argv in same.argvs() if "add-iam-policy-binding" in argv] == grants("mlapi-admin-token")
    # a changed value (a rotation) adds a version, to the secret that is there
    rotated = ok(make("create-secrets", ADMIN_TOKEN="a-new-token", **GCP,
                      env={**ENV, "FAKEBIN_SECRETS_EXIST": "1", "FAKEBIN_SECRET_PAYLOAD": ADMIN_TOKEN}))
    assert secret_calls(rotated, ("secrets", "create")) == []
    [added] = secret_calls(rotated, ("secrets", "versions", "add"))
    assert added["stdin"] == "a-new-token"


def test_create_secrets_with_nothing_secret_set_stores_nothing(make, tmp_path):
    run = ok(make("create-secrets", FEATURE_STORE_URL="postgresql+psycopg://reader@10.0.0.5/features",
                  REDIS_URL="redis://10.0.0.3:6379/0", env=ENV, **GCP))
    assert run.calls == [] and "nothing to store" in run.out
    empty = tmp_path / "empty"
    empty.write_text("")
    refused = make("create-secrets", API_KEYS_FILE=str(empty), env=ENV, **GCP)
    assert refused.returncode != 0 and f"API_KEYS_FILE={empty} is not a file with content" in refused.err
    assert secret_calls(refused, ("secrets", "versions", "add")) == []


@pytest.mark.parametrize("url, secret", [
    ("postgresql+psycopg://reader:pa55word@10.0.0.5/features", True),
    ("mysql+pymysql://writer:p%40ss@10.0.0.6/predictions?charset=utf8mb4", True),
    ("postgresql+psycopg://reader@10.0.0.5/features?password=pa55word", True),
    ("postgresql+psycopg://reader@10.0.0.5:5432/features?sslmode=require", False),
    ("postgresql+psycopg://10.0.0.5:5432/features", False),
    ("sqlite:///data/features.db", False),
], ids=["user-password", "encoded-password", "password-parameter", "user-only", "host-port", "sqlite"])
def test_a_database_url_is_a_secret_exactly_when_it_holds_a_password(make, url, secret):
    [*_, argv] = ok(make("deploy", FEATURE_STORE_URL=url, **GCP)).argvs()
    if secret:
        assert argv == deploy_argv(git_sha(), secrets=(
            "--set-secrets=FEATURE_STORE_URL=mlapi-feature-store-url:7", "--clear-network"))
        assert not any(url in arg or "pa55word" in arg for arg in argv)
    else:
        assert argv == deploy_argv(git_sha(), env_flag=service_env(FEATURE_STORE_URL=url))


@pytest.mark.parametrize("target", ["deploy", "deploy-canary", "deploy-batch-job"])
def test_deploy_passes_every_secret_pinned_and_none_as_a_plain_variable(make, tmp_path, target):
    keys = tmp_path / "api-keys.txt"
    keys.write_text("key-one\n")
    run = ok(make(target, ADMIN_TOKEN=ADMIN_TOKEN, METRICS_TOKEN="m3trics", API_KEYS="key-a,key-b",
                  API_KEYS_FILE=str(keys), PREDICTIONS_DB_URL="postgresql+psycopg://w:pa55word@10.0.0.5/p",
                  REDIS_URL=REDIS_WITH_PASSWORD, RATE_LIMIT="100/minute;2000/hour", echo=True, **GCP))
    names = ["mlapi-api-keys", "mlapi-admin-token", "mlapi-metrics-token", "mlapi-predictions-db-url",
             "mlapi-redis-url", "mlapi-api-keys-file"]
    # the newest enabled version of each, looked up first (the stand-in answers 7)
    lookups = [argv for argv in run.argvs() if argv[:3] == ["secrets", "versions", "list"]]
    assert lookups == [["secrets", "versions", "list", name, f"--project={PROJECT}", "--filter=state:enabled",
                        "--sort-by=~createTime", "--limit=1", "--format=value(name.basename())"] for name in names]
    [deploy] = [argv for argv in run.argvs() if argv[:2] in (["run", "deploy"], ["run", "jobs"])]
    assert ("--set-secrets=API_KEYS=mlapi-api-keys:7,ADMIN_TOKEN=mlapi-admin-token:7,"
            "METRICS_TOKEN=mlapi-metrics-token:7,PREDICTIONS_DB_URL=mlapi-predictions-db-url:7,"
            "REDIS_URL=mlapi-redis-url:7,/secrets/api-keys-file/value=mlapi-api-keys-file:7") in deploy
    [plain] = [arg.split("=^|^", 1)[1].split("|") for arg in deploy if arg.startswith("--set-env-vars=")]
    assert not {"API_KEYS", "ADMIN_TOKEN", "METRICS_TOKEN", "PREDICTIONS_DB_URL", "REDIS_URL"} & {
        entry.split("=", 1)[0] for entry in plain}
    # the file's setting names the mounted copy; a setting that is no secret stays plain
    assert {"API_KEYS_FILE=/secrets/api-keys-file/value", "RATE_LIMIT=100/minute;2000/hour"} <= set(plain)
    # Memorystore's private address: Direct VPC egress on the default network
    assert deploy[-3:] in (["--network=default", "--subnet=default", "--vpc-egress=private-ranges-only"],
                           ["--vpc-egress=private-ranges-only", "--no-traffic", "--tag=canary"])
    for value in (ADMIN_TOKEN, "m3trics", "key-a", "pa55word", "r3dis-auth"):
        assert not any(value in arg for argv in run.argvs() for arg in argv), value
        assert value not in run.out + run.err, value


@pytest.mark.parametrize("target", ["deploy", "deploy-canary", "deploy-batch-job"])
def test_a_secret_not_stored_yet_stops_the_deploy_before_it_runs(make, target):
    run = make(target, ADMIN_TOKEN=ADMIN_TOKEN, env={"FAKEBIN_SECRET_VERSION": ""}, **GCP)
    assert run.returncode != 0
    assert "the secret mlapi-admin-token has no enabled version" in run.err and "make create-secrets" in run.err
    assert [argv for argv in run.argvs() if argv[0] == "run"] == [] and ADMIN_TOKEN not in run.out + run.err


def test_run_container_passes_secrets_by_name_and_mounts_secret_files(make, tmp_path):
    keys = tmp_path / "api-keys.txt"
    keys.write_text("key-one\n")
    run = ok(make("run-container", ADMIN_TOKEN=ADMIN_TOKEN, FEATURE_STORE_URL=STORE_WITH_PASSWORD,
                  PREDICTIONS_DB_URL="sqlite:///data/predictions.db", API_KEYS_FILE=str(keys),
                  env={"FAKEBIN_ENV": "ADMIN_TOKEN,FEATURE_STORE_URL"}, echo=True))
    [call] = [call for call in run.calls if call["tool"] == "docker"]
    assert {"--env=ADMIN_TOKEN", "--env=FEATURE_STORE_URL", "--env=PREDICTIONS_DB_URL=sqlite:///data/predictions.db",
            f"--volume={keys}:/run/secrets/api-keys:ro", "--env=API_KEYS_FILE=/run/secrets/api-keys"} <= set(call["argv"])
    # docker reads the values from its own environment
    assert call["env"] == {"ADMIN_TOKEN": ADMIN_TOKEN, "FEATURE_STORE_URL": STORE_WITH_PASSWORD}
    for value in (ADMIN_TOKEN, "pa55word"):
        assert not any(value in arg for arg in call["argv"]) and value not in run.out + run.err


def test_create_redis_makes_a_basic_instance_and_prints_its_url(make):
    run = ok(make("create-redis", **GCP))
    assert run.argvs() == [
        ["redis", "instances", "create", "mlapi", "--region=europe-west1", f"--project={PROJECT}", "--tier=basic",
         "--size=1", "--redis-version=redis_7_2", "--network=default", "--connect-mode=direct-peering",
         "--labels=app=mlapi", "--redis-config=maxmemory-policy=volatile-lru"],
        ["redis", "instances", "describe", "mlapi", "--region=europe-west1", f"--project={PROJECT}",
         '--format=value[separator=":"](host,port)'],
    ]
    assert "REDIS_URL=redis://10.0.0.3:6379/0" in run.out.splitlines()
    [create, _] = ok(make("create-redis", REDIS_INSTANCE="cache", REDIS_TIER="standard", REDIS_SIZE_GB="5",
                          REDIS_VERSION="redis_7_0", VPC_NETWORK="serving", **GCP)).argvs()
    assert create[3] == "cache" and {"--tier=standard", "--size=5", "--redis-version=redis_7_0",
                                     "--network=serving"} <= set(create)
    refused = make("create-redis", REDIS_SIZE_GB="1GB", **GCP)
    assert refused.returncode != 0 and "REDIS_SIZE_GB=1GB is not a whole number" in refused.err and not refused.calls


@pytest.mark.parametrize("variables, flags", [
    ({}, ["--clear-network"]),
    ({"REDIS_URL": "redis://10.0.0.3:6379/0"},
     ["--network=default", "--subnet=default", "--vpc-egress=private-ranges-only"]),
    ({"REDIS_URL_SECRET": "shared-redis-url"},
     ["--network=default", "--subnet=default", "--vpc-egress=private-ranges-only"]),
    ({"REDIS_URL": "redis://10.8.0.3:6379/0", "VPC_NETWORK": "serving", "VPC_SUBNET": "serving-europe-west1"},
     ["--network=serving", "--subnet=serving-europe-west1", "--vpc-egress=private-ranges-only"]),
    ({"VPC_NETWORK": "serving"}, ["--network=serving", "--subnet=serving", "--vpc-egress=private-ranges-only"]),
], ids=["none", "redis", "redis-secret", "own-network", "network-only"])
def test_deploy_reaches_the_vpc_through_direct_egress_when_redis_or_a_network_is_set(make, variables, flags):
    [*_, argv] = ok(make("deploy", **variables, **GCP)).argvs()
    start = argv.index(next(arg for arg in argv if arg.startswith("--add-custom-audiences="))) + 2
    assert argv[start:] == flags
