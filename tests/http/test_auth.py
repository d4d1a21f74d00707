"""The one token check (app/http/auth.py) behind GET /metrics and the API docs: the same
header is accepted or refused by both, with Basic where a browser needs it (the docs)."""
import base64

import pytest

from conftest import models_env


@pytest.fixture
def guarded(make_app, trained):
    return make_app(MODELS=models_env(trained, "cancer"), METRICS_TOKEN="s3cret",
                    API_DOCS_TOKEN="s3cret").test_client()


def basic(userpass: bytes) -> str:
    return "Basic " + base64.b64encode(userpass).decode()


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret ", " Bearer s3cret"])
def test_a_bearer_token_opens_both_whatever_the_schemes_case(guarded, header):
    # RFC 7235: the scheme is case-insensitive; /metrics once wanted "Bearer " exactly
    for path in ("/metrics", "/openapi.json"):
        assert guarded.get(path, headers={"Authorization": header}).status_code == 200, (path, header)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer wrong", "Bearer s3cret2", "Token s3cret", "s3cret",
                                    basic(b"anyone:wrong"), "Basic !!notbase64"])
def test_anything_else_is_refused_by_both(guarded, header):
    for path in ("/metrics", "/openapi.json"):
        assert guarded.get(path, headers={"Authorization": header}).status_code == 401, (path, header)


def test_basic_is_for_the_docs_a_browser_opens_not_for_metrics(guarded):
    header = {"Authorization": basic(b"anyone:s3cret")}
    assert guarded.get("/openapi.json", headers=header).status_code == 200
    assert guarded.get("/metrics", headers=header).status_code == 401
