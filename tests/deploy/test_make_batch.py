"""Batch inference on Google Cloud with make: the Pub/Sub topic with its dead-letter topic, the
push identity and an authenticated push subscription with retries, and the Cloud Run job that
scores from the feature store into the predictions database."""
from __future__ import annotations

import pytest

from makefile_helpers import (BUCKET, GCP, PROJECT, RUNTIME, SA_NAME, SERVICE_FLAGS, bindings, git_sha,  # noqa: F401
                              image, make, ok)
from test_make_cloud_run import PUSH_AUDIENCE


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
                      topic: str = "mlapi-batch-requests", ack: str = "65", attempts: str = "10",
                      min_delay: str = "10s", max_delay: str = "600s", audience: str = PUSH_AUDIENCE) -> list[str]:
    return ["pubsub", "subscriptions", "create", subscription, f"--topic={topic}", f"--project={PROJECT}",
            f"--push-endpoint={url}/pubsub/push", f"--push-auth-service-account={PUSH_SA}",
            f"--push-auth-token-audience={audience}", f"--ack-deadline={ack}",
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


@pytest.mark.parametrize("variables, ack", [
    ({}, "65"),                                        # REQUEST_TIMEOUT's default 60 s + 5, as Cloud Run's --timeout
    ({"REQUEST_TIMEOUT": "300"}, "305"),
    ({"REQUEST_TIMEOUT": "900"}, "600"),               # Pub/Sub's longest
    ({"REQUEST_TIMEOUT": "2"}, "10"),                  # and shortest
    ({"REQUEST_TIMEOUT": "300", "ACK_DEADLINE": "120"}, "120"),  # an explicit deadline wins
])
def test_the_ack_deadline_follows_the_request_timeout(make, variables, ack):
    # A push's ack deadline is its request timeout: shorter than the server's, and Pub/Sub would
    # give up on (and redeliver) a push the service is still answering.
    argvs = ok(make("create-push-subscription", **variables, **GCP)).argvs()
    [create] = [argv for argv in argvs if argv[:3] == ["pubsub", "subscriptions", "create"]]
    assert f"--ack-deadline={ack}" in create


def test_a_request_timeout_that_is_not_a_number_stops_before_any_command(make):
    run = make("create-push-subscription", REQUEST_TIMEOUT="1m", **GCP)
    assert run.returncode != 0 and "REQUEST_TIMEOUT=1m is not a whole number" in run.err and run.calls == []


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
                   cpu: str = "2", env_flag: str = "--clear-env-vars", job: str = "mlapi-batch",
                   secrets: tuple[str, ...] = ("--clear-secrets", "--clear-network")) -> list[str]:
    return ["run", "jobs", "deploy", job, f"--image={image(sha)}", *SERVICE_FLAGS, f"--service-account={RUNTIME}",
            "--command=mlapi", f"--args={args}", f"--tasks={tasks}", f"--parallelism={parallelism}",
            f"--max-retries={retries}", f"--task-timeout={timeout}", f"--memory={memory}", f"--cpu={cpu}", env_flag,
            *secrets]


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


def created_subscription(argvs: list[list[str]]) -> list[str]:
    [create] = [argv for argv in argvs if argv[:3] == ["pubsub", "subscriptions", "create"]]
    return create


def flag_value(argv: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    return value


@pytest.mark.parametrize("variables", [
    {},
    {"DOCKER_PROJECT": "fraud", "GCP_REGION": "us-central1", "SERVICE_URL": "https://fraud.example.com"},
    {"PUSH_AUDIENCE": "https://batch.example.com"},  # .env's own value wins on both sides
], ids=["default", "other-service", "explicit"])
def test_deploy_and_the_push_subscription_agree_on_the_token_audience(make, variables):
    """The audience the subscription's tokens carry is the one the service checks (PUSH_AUDIENCE)
    and the custom audience Cloud Run's IAM accepts, never the URL the push reaches (which the app
    would have to read from the request's Host)."""
    [deploy] = ok(make("deploy", **variables, **GCP)).argvs()
    subscription = created_subscription(ok(make("create-push-subscription", **variables, **GCP)).argvs())
    audience = flag_value(subscription, "push-auth-token-audience")
    assert flag_value(deploy, "add-custom-audiences") == audience
    assert f"|PUSH_AUDIENCE={audience}|" in flag_value(deploy, "set-env-vars") + "|"
    where = {"GCP_REGION": "europe-west1", "DOCKER_PROJECT": "mlapi", **GCP, **variables}
    assert audience == variables.get("PUSH_AUDIENCE",
                                     "{GCP_PROJECT_ID}/{GCP_REGION}/{DOCKER_PROJECT}/pubsub/push".format(**where))
    assert "run.app" not in audience and not audience.startswith(flag_value(subscription, "push-endpoint"))


@pytest.mark.parametrize("target", ["deploy", "deploy-canary", "create-push-subscription"])
def test_an_audience_gcloud_would_split_stops_before_any_command(make, target):
    run = make(target, PUSH_AUDIENCE="https://a.example.com,https://b.example.com", **GCP)
    assert run.returncode != 0 and "PUSH_AUDIENCE=" in run.err and run.calls == []
