"""What `make deploy` gives a revision beyond the image: HTTP probes on routes that say what they
should (the startup probe on models loaded, not on the databases), the worker model as
--concurrency, REQUEST_TIMEOUT as --timeout, an explicit execution environment and CPU boost,
and the push account /pubsub/push accepts."""
from __future__ import annotations

import re

import pytest

from conftest import models_env
from makefile_helpers import GCP, git_sha, make, makefile_text, ok  # noqa: F401
from mlapi.server import launch
from test_make_cloud_run import PUSH_SA, STARTUP_PROBE, deploy_argv, liveness_probe, service_env


def flag(argv: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    return value


def env_of(argv: list[str]) -> dict[str, str]:
    value = flag(argv, "set-env-vars")
    assert value.startswith("^|^")
    return dict(pair.split("=", 1) for pair in value[3:].split("|"))


def test_deploy_probes_start_up_on_the_models_and_liveness_on_the_process(make):
    [argv] = ok(make("deploy", **GCP)).argvs()
    assert STARTUP_PROBE in argv and liveness_probe() in argv
    # Cloud Run caps a startup probe at 240 s (failureThreshold x periodSeconds), timeout <= period.
    probe = dict(pair.split("=") for pair in STARTUP_PROBE.split("=", 1)[1].split(","))
    assert int(probe["failureThreshold"]) * int(probe["periodSeconds"]) <= 240
    assert int(probe["timeoutSeconds"]) <= int(probe["periodSeconds"])
    [canary, _] = ok(make("deploy-canary", **GCP)).argvs()
    assert STARTUP_PROBE in canary and liveness_probe() in canary


@pytest.mark.parametrize("variables, concurrency, workers", [
    ({}, 1, 1),                                                            # uWSGI, 1 vCPU, 1 thread
    ({"CLOUD_RUN_CPU": "2"}, 2, 2),
    ({"CLOUD_RUN_CPU": "0.5"}, 1, 1),                                      # a share of a vCPU: one worker
    ({"CLOUD_RUN_CPU": "2000m"}, 2, 2),
    ({"CLOUD_RUN_CPU": "4", "UWSGI_THREADS": "4"}, 16, 4),
    ({"SERVER": "gunicorn", "GUNICORN_THREADS": "8", "WEB_CONCURRENCY": "3"}, 24, 3),
    ({"SERVER": "gunicorn", "UWSGI_THREADS": "8"}, 1, 1),                  # another server's threads: not used
    ({"MAX_BATCH_SIZE": "16", "CLOUD_RUN_CPU": "2"}, 2 * launch.BATCHING_THREADS, 2),  # granian, batching threads
    ({"MAX_BATCH_SIZE": "16", "GRANIAN_BLOCKING_THREADS": "8"}, 8, 1),
    ({"MAX_BATCH_SIZE": "16", "SERVER": "uwsgi"}, launch.BATCHING_THREADS, 1),
    ({"MAX_BATCH_SIZE": "1"}, 1, 1),                                       # 1: batching is off
    ({"WEB_CONCURRENCY": "40", "UWSGI_THREADS": "40"}, 1000, 40),          # Cloud Run's maximum
    ({"CLOUD_RUN_CONCURRENCY": "50", "CLOUD_RUN_CPU": "2"}, 50, 2),        # asked for explicitly
])
def test_concurrency_is_what_the_server_holds_at_once(make, variables, concurrency, workers):
    [argv] = ok(make("deploy", **variables, **GCP)).argvs()
    assert flag(argv, "concurrency") == str(concurrency)
    env = env_of(argv)
    # The worker count Cloud Run was sized for is the one the server runs: sent, whatever the
    # CPUs or the (boosted) quota the container sees.
    assert env["WEB_CONCURRENCY"] == str(workers)
    for name in ("SERVER", "UWSGI_THREADS", "GUNICORN_THREADS", "GRANIAN_BLOCKING_THREADS", "MAX_BATCH_SIZE"):
        assert env.get(name) == variables.get(name)  # the server choice and threads travel as given


def test_the_makefile_knows_the_servers_batching_threads():
    [value] = re.findall(r"^BATCHING_THREADS = (\d+)$", makefile_text(), flags=re.M)
    assert int(value) == launch.BATCHING_THREADS


@pytest.mark.parametrize("request_timeout, timeout, liveness_failures", [
    (None, 65, 4), ("10", 15, 2), ("300", 305, 12), ("3600", 3600, 122)])
def test_cloud_runs_timeout_leaves_the_server_time_to_answer_its_own_504(make, request_timeout, timeout,
                                                                         liveness_failures):
    variables = {"REQUEST_TIMEOUT": request_timeout} if request_timeout else {}
    [argv] = ok(make("deploy", **variables, **GCP)).argvs()
    assert flag(argv, "timeout") == str(timeout)
    assert env_of(argv).get("REQUEST_TIMEOUT") == request_timeout
    # Liveness gives up only after longer than a request may take: busy workers are not dead ones.
    assert liveness_probe(liveness_failures) in argv
    assert 30 * liveness_failures > int(request_timeout or 60)


@pytest.mark.parametrize("name, value", [("REQUEST_TIMEOUT", "1m"), ("WEB_CONCURRENCY", "0"),
                                         ("UWSGI_THREADS", "four"), ("CLOUD_RUN_CONCURRENCY", "-1")])
def test_a_number_that_is_not_one_stops_the_deploy_before_gcloud(make, name, value):
    run = make("deploy", **{name: value}, **GCP)
    assert run.returncode != 0 and f"{name}={value} is not a whole number" in run.err and run.calls == []


def test_execution_environment_and_cpu_boost_are_always_explicit(make):
    [argv] = ok(make("deploy", **GCP)).argvs()
    assert "--execution-environment=gen2" in argv and "--cpu-boost" in argv
    [argv] = ok(make("deploy", CLOUD_RUN_EXECUTION_ENVIRONMENT="gen1", CLOUD_RUN_CPU_BOOST="false", **GCP)).argvs()
    assert "--execution-environment=gen1" in argv and "--no-cpu-boost" in argv and "--cpu-boost" not in argv


def test_the_push_account_and_the_new_settings_reach_the_service(make):
    [argv] = ok(make("deploy", **GCP)).argvs()
    assert argv == deploy_argv(git_sha())
    assert env_of(argv)["PUSH_SERVICE_ACCOUNT"] == PUSH_SA  # make create-pubsub-invoker's account
    settings = {"MAX_ROWS": "500", "ENVIRONMENT": "production", "PUSH_AUTH": "on",
                "PUSH_AUDIENCE": "https://batch.example.com", "PUSH_SERVICE_ACCOUNT": "pusher@other.iam.gserviceaccount.com"}
    [argv] = ok(make("deploy", **settings, **GCP)).argvs()
    assert flag(argv, "set-env-vars") == service_env(**settings).split("=", 1)[1]
    # The batch job runs no server and gets no push check: only what .env says.
    [job] = ok(make("deploy-batch-job", **GCP)).argvs()
    assert "--clear-env-vars" in job and not any(arg.startswith("--concurrency") for arg in job)


def test_the_startup_probes_route_says_models_loaded_and_asks_no_database(make_app, trained, tmp_path):
    """/startupz: 200 once every model loaded, though the database is down (a /readyz probe would
    keep every instance from starting during an outage); 503 when a model failed to load."""
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=1"
    client = make_app(MODELS=models_env(trained, "cancer"), FEATURE_STORE_URL=unreachable).test_client()
    assert client.get("/readyz").status_code == 503
    started = client.get("/startupz")
    assert started.status_code == 200 and started.get_json()["ready"] == ["cancer:1"]
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a pickle")
    client = make_app(MODELS=f"{models_env(trained, 'cancer')},broken={broken}").test_client()
    failed = client.get("/startupz")
    assert failed.status_code == 503 and failed.get_json()["failures"][0]["model"] == "broken:1"
    assert str(tmp_path) not in failed.get_data(as_text=True)  # no artifact path to an anonymous caller
