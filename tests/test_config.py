import pytest

from mlapi.config import Settings, parse_models
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
