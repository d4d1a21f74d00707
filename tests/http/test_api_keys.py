"""API keys (API_KEYS / API_KEYS_FILE): every route but those with rules of their own needs one,
on the fast path and in Flask alike; a 401 is JSON with WWW-Authenticate; a key is never
logged, only its id."""
import logging

import pytest

from conftest import as_plain, models_env
from mlapi.config import Settings
from mlapi.errors import ConfigurationError
from mlapi.http.api_keys import key_id

KEY, OTHER = "k3y-for-the-tests-0123456789", "another.key~for+tests/0123456789"


@pytest.fixture
def keyed(make_app, trained):
    return make_app(MODELS=models_env(trained, "cancer", "text"), API_KEYS=f"{KEY}, {OTHER}",
                    METRICS_TOKEN="metrics-token").test_client()


def requests_of_every_kind(trained):
    rows = as_plain(trained["cancer"][2])
    return [("post", "/predict", {"json": {"instances": rows}}),                      # the fast path
            ("post", "/models/cancer/predict", {"data": "{}", "content_type": "text/plain"}),  # Flask
            ("post", "/model/text/text_to_prediction", {"json": {"text": "refund my invoice"}}),
            ("get", "/models", {}), ("get", "/models/cancer", {}), ("get", "/predictions/1", {}),
            ("get", "/no/such/route", {})]  # deny by default: a 401, not a 404 that maps the routes


NO_KEY, WRONG_KEY = 'Bearer realm="mlapi"', 'Bearer realm="mlapi", error="invalid_token"'  # RFC 6750 3.1


@pytest.mark.parametrize("headers, challenge", [
    ({}, NO_KEY), ({"Authorization": "Bearer wrong-key-0123456789"}, WRONG_KEY), ({"X-API-Key": KEY[:-1]}, WRONG_KEY),
    ({"Authorization": f"Basic {KEY}"}, NO_KEY), ({"Authorization": "Bearer"}, NO_KEY), ({"X-API-Key": ""}, NO_KEY)])
def test_every_model_route_refuses_a_missing_or_wrong_key_with_a_json_401(keyed, trained, headers, challenge):
    for method, path, kwargs in requests_of_every_kind(trained):
        answer = getattr(keyed, method)(path, headers=headers, **kwargs)
        assert answer.status_code == 401, (path, headers)
        assert answer.headers["WWW-Authenticate"] == challenge  # a wrong key is invalid_token, none is no error
        assert answer.is_json and answer.json["error"]["status"] == 401
        assert "Authorization: Bearer <key> or X-API-Key: <key>" in answer.json["error"]["message"]
        assert KEY not in answer.get_data(as_text=True)


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"Authorization": f"bearer  {OTHER} "},
                                     {"X-API-Key": KEY}, {"X-API-Key": OTHER, "Authorization": "Basic xyz"}])
def test_a_valid_key_opens_the_fast_path_and_flask_alike(keyed, trained, headers):
    expected = {"/predict": 200, "/models/cancer/predict": 415, "/model/text/text_to_prediction": 200,
                "/models": 200, "/models/cancer": 200, "/predictions/1": 200, "/no/such/route": 404}
    for method, path, kwargs in requests_of_every_kind(trained):
        assert getattr(keyed, method)(path, headers=headers, **kwargs).status_code == expected[path], path


def test_routes_with_rules_of_their_own_keep_them(keyed):
    for path in ("/healthz", "/readyz", "/startupz", "/openapi.json", "/docs", "/docs/init.js"):
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/metrics").status_code == 401  # METRICS_TOKEN's rule, not the API keys'
    assert keyed.get("/metrics", headers={"Authorization": "Bearer metrics-token"}).status_code == 200
    assert keyed.post("/pubsub/push", json={}).status_code != 401  # PUSH_AUTH's rule (off here)
    assert keyed.get("/docs/a/b").status_code == 401  # one segment under /docs only


def test_keys_are_never_logged_only_their_ids(make_app, trained, caplog):
    with caplog.at_level(logging.DEBUG):
        client = make_app(MODELS=models_env(trained, "cancer"), API_KEYS=KEY, ACCESS_LOG="1").test_client()
        rows = as_plain(trained["cancer"][2])
        client.post("/predict", json={"instances": rows}, headers={"X-API-Key": KEY})
        client.post("/predict", json={"instances": rows}, headers={"Authorization": f"Bearer {OTHER}"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert KEY not in logged and OTHER not in logged
    assert f"key:{key_id(KEY)}" in logged  # the access log names the caller by its key's id


def test_a_keys_file_takes_one_key_per_line_with_comments(tmp_path):
    keys = tmp_path / "api_keys"
    keys.write_text(f"# the mobile app\n{KEY}   # since 2026-12\n\n  {OTHER}\n{KEY}\n")
    assert Settings.from_env({"API_KEYS_FILE": str(keys)}).api_keys == (KEY, OTHER)
    assert Settings.from_env({"API_KEYS": f" {KEY},,{OTHER} "}).api_keys == (KEY, OTHER)
    assert KEY not in repr(Settings.from_env({"API_KEYS": KEY}))


@pytest.mark.parametrize("content, reason", [("# only a comment\n\n", "holds no key"),
                                             ("short-key\n", "key 1 is not a key"),
                                             (f"{KEY}\nhas space in it 0123456789\n", "key 2 is not a key")])
def test_a_keys_file_without_a_usable_key_stops_the_server_without_quoting_it(tmp_path, content, reason):
    keys = tmp_path / "api_keys"
    keys.write_text(content)
    with pytest.raises(ConfigurationError, match=reason) as refused:
        Settings.from_env({"API_KEYS_FILE": str(keys)})
    assert "short-key" not in str(refused.value) and "has space" not in str(refused.value)


def test_api_keys_and_a_keys_file_together_are_refused(tmp_path):
    keys = tmp_path / "api_keys"
    keys.write_text(KEY)
    with pytest.raises(ConfigurationError, match="API_KEYS and API_KEYS_FILE are both set"):
        Settings.from_env({"API_KEYS": OTHER, "API_KEYS_FILE": str(keys)})
