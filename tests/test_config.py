import pytest

from mlapi.config import Settings
from mlapi.naming import parse_models
from mlapi.errors import ConfigurationError

SHA = "ab" * 32


def test_models_entries_names_versions_and_digests():
    specs = parse_models(f"iris=models/a.joblib, iris=gs://b/m.joblib#sha256={SHA}, tick:v7=x.pkl")
    assert [(s.name, s.version, s.uri, s.sha256) for s in specs] == [
        ("iris", "1", "models/a.joblib", None),
        ("iris", "2", "gs://b/m.joblib", SHA),
        ("tick", "v7", "x.pkl", None),
    ]


def test_single_model_form_defaults_and_model_sha256():
    settings = Settings.from_env({})
    assert [(s.name, s.version, s.uri) for s in settings.models] == [("latest", "1", "models/latest.joblib")]
    settings = Settings.from_env({"MODEL_URI": "m.joblib", "MODEL_NAME": "churn", "MODEL_SHA256": SHA.upper()})
    assert settings.models[0].sha256 == SHA and settings.default_model == "churn"
    assert settings.port == 8080 and settings.max_request_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize("value", ["iris", "=x.joblib", "a b=x", "iris=", "a=x,a:1=y", "a=x#sha256=12"])
def test_bad_models_values_are_refused(value):
    with pytest.raises(ConfigurationError):
        parse_models(value)


@pytest.mark.parametrize("env", [{"PORT": "abc"}, {"PORT": "0"}, {"STRICT_SKLEARN_VERSION": "maybe"},
                                 {"MAX_REQUEST_BYTES": "-1"}])
def test_bad_settings_are_refused(env):
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_one_project_rule_for_logs_and_publish():
    # GCP_PROJECT_ID (what .env and the Makefile deploy with) wins over the ambient
    # GOOGLE_CLOUD_PROJECT; either alone is the project.
    both = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "ambient", "GCP_PROJECT_ID": "deployed"})
    assert both.google_cloud_project == "deployed"
    assert Settings.from_env({"GOOGLE_CLOUD_PROJECT": "ambient"}).google_cloud_project == "ambient"
    assert Settings.from_env({"GCP_PROJECT_ID": " deployed "}).google_cloud_project == "deployed"
    assert Settings.from_env({}).google_cloud_project is None


def test_launcher_and_command_settings_are_typed():
    settings = Settings.from_env({
        "SERVER": "Gunicorn", "WEB_CONCURRENCY": "3", "UWSGI_THREADS": "4", "GUNICORN_THREADS": "5",
        "GRANIAN_BLOCKING_THREADS": "6", "UWSGI_INI": "/etc/u.ini", "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
        "CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "4", "CLOUD_RUN_EXECUTION": "job-1",
        "PUBSUB_TOPIC": "requests", "ML_API_URL": "http://h:9/", "ACCESS_LOG": "0", "LOG_LEVEL": "debug"})
    assert (settings.server, settings.web_concurrency) == ("gunicorn", 3)
    assert (settings.uwsgi_threads, settings.gunicorn_threads, settings.granian_blocking_threads) == (4, 5, 6)
    assert (settings.uwsgi_ini, settings.prometheus_multiproc_dir) == ("/etc/u.ini", "/tmp/m")
    assert (settings.task_index, settings.task_count, settings.execution) == (2, 4, "job-1")
    assert (settings.pubsub_topic, settings.ml_api_url) == ("requests", "http://h:9")
    assert settings.access_log is False and settings.log_level == "DEBUG"
    defaults = Settings.from_env({})
    assert (defaults.server, defaults.web_concurrency, defaults.gunicorn_threads) == (None, None, None)
    assert (defaults.task_index, defaults.task_count, defaults.execution) == (0, 1, None)
    assert not defaults.batching and Settings.from_env({"MAX_BATCH_SIZE": "2"}).batching
    assert not Settings.from_env({"MAX_BATCH_SIZE": "1"}).batching  # one row per call: nothing merged


@pytest.mark.parametrize("key, value, expected", [
    ("MAX_BATCH_SIZE", "abc", "is not an integer"),
    ("WEB_CONCURRENCY", "0", "must be at least 1"),
    ("GUNICORN_THREADS", "many", "is not an integer"),
    ("UWSGI_THREADS", "-2", "must be at least 1"),
    ("SERVER", "nginx", "is not one of uwsgi, gunicorn, granian"),
    ("LOG_LEVEL", "loud", "is not one of debug, info"),
    ("LOG_FORMAT", "xml", "is not one of json, text"),
    ("ACCESS_LOG", "sometimes", "is not a boolean"),
    ("CLOUD_RUN_TASK_INDEX", "x", "is not an integer"),
    ("CLOUD_RUN_TASK_COUNT", "0", "must be at least 1"),
    ("MAX_BATCH_WAIT_MS", "soon", "is not a number"),
    ("MODEL_SHA256", "abc", "must be 64 hex digits"),
    ("MODEL_URI", "m.joblib#sha256=12", "malformed #sha256= digest"),
    ("FEATURE_TABLE", "x; drop", "plain SQL identifier"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_expects(key, value, expected):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({key: value})
    message = refused.value.message
    assert message.startswith(key) and expected in message and "\n" not in message


def test_an_empty_docs_token_file_is_refused_not_read_as_no_protection(tmp_path):
    (tmp_path / "token").write_text(" \n")
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"API_DOCS_TOKEN_FILE": str(tmp_path / "token")})
    assert refused.value.message.startswith("API_DOCS_TOKEN_FILE") and "is empty" in refused.value.message
    (tmp_path / "token").write_text("s3cret\n")
    assert Settings.from_env({"API_DOCS_TOKEN_FILE": str(tmp_path / "token")}).api_docs_token == "s3cret"


@pytest.mark.parametrize("env, served", [
    ({}, True),                                   # locally: on, for a newcomer
    ({"K_SERVICE": "mlapi"}, False),              # on Cloud Run: off unless asked
    ({"K_SERVICE": "mlapi", "API_DOCS": "on"}, True),
    ({"API_DOCS": "off"}, False),
])
def test_api_docs_default_is_off_on_cloud_run(env, served):
    assert Settings.from_env(env).api_docs is served


def test_call_log_batch_ms_is_bounded_both_ways():
    from mlapi.config import Settings
    from mlapi.errors import ConfigurationError

    assert Settings.from_env({}).call_log_batch_ms == 25
    assert Settings.from_env({"CALL_LOG_BATCH_MS": "0"}).call_log_batch_ms == 0
    for bad in ("-1", "1001"):
        with pytest.raises(ConfigurationError, match="CALL_LOG_BATCH_MS"):
            Settings.from_env({"CALL_LOG_BATCH_MS": bad})
