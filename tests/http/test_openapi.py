"""GET /openapi.json: generated from the routes and the Structs that validate their bodies, with
each served model's own rows and example; switched off or token-protected by settings."""
import base64
from urllib.parse import urljoin, urlsplit

import msgspec
import pytest

from conftest import models_env
from mlapi.protocols.request_bodies import PredictBody, TextBody
from mlapi.serving.card import model_card

DOCS_ROUTES = {"/openapi.json", "/docs", "/docs/", "/docs/init.js", "/docs/<asset>"}


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def flask_path(path: str) -> str:
    return path.replace("{", "<").replace("}", ">")


def test_every_route_the_app_answers_is_documented(client, document):
    app = client.application
    answered = {(rule.rule, method) for rule in app.url_map.iter_rules()
                for method in rule.methods - {"HEAD", "OPTIONS"}
                if rule.rule not in DOCS_ROUTES and rule.endpoint != "static"}  # Flask's own, not the API
    documented = {(flask_path(path), method.upper()) for path, operations in document["paths"].items()
                  for method in operations}
    assert answered <= documented
    # and nothing documented that does not exist, but the served models' own concrete paths
    extra = {path for path, _ in documented - answered}
    assert all(path.startswith("/models/") and "<" not in path for path in extra), extra
    assert document["openapi"] == "3.1.0"


def test_request_schemas_are_the_structs_the_server_validates_with(client, document):
    schemas = document["components"]["schemas"]
    _, expected = msgspec.json.schema_components([PredictBody, TextBody], ref_template="#/components/schemas/{name}")
    generated = {k: v for k, v in schemas["PredictBody"].items() if k != "oneOf"}
    assert generated == expected["PredictBody"] and schemas["TextBody"] == expected["TextBody"]
    # what a Struct cannot say by its fields is there too: exactly one instance key
    assert schemas["PredictBody"]["oneOf"] == [{"required": [key]} for key in
                                               ("instances", "inputs", "dataframe_split", "dataframe_records")]
    # every JSON route the fast path serves names, in the document, the Struct it decodes with
    for rule, handler in fast_routes(client.application):
        operation = document["paths"][rule.replace("<", "{").replace(">", "}")]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        component = schemas[handler.decode.schema.__name__]
        if rule == "/predict":  # shown with the default model's rows: the same body otherwise
            assert schema["oneOf"] == component["oneOf"] and schema["properties"].keys() == component["properties"].keys()
        else:
            assert schema == {"$ref": f"#/components/schemas/{handler.decode.schema.__name__}"}, rule


def fast_routes(app):
    fast = app.wsgi_app.app  # the request pipeline wraps the fast path
    return [(rule, handler) for _, rule, handler in fast.routes if "{" not in rule]


def test_error_responses_are_documented_with_the_error_body(document):
    responses = document["components"]["responses"]
    for status, name in [(400, "BadRequest"), (404, "NotFound"), (405, "MethodNotAllowed"), (413, "PayloadTooLarge"),
                         (415, "UnsupportedMediaType"), (422, "InvalidInput"), (503, "Unavailable")]:
        assert responses[name]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert document["paths"]["/models/{name}/predict"]["post"]["responses"][str(status)] == {
            "$ref": f"#/components/responses/{name}"}
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"message", "status"}


def test_each_served_model_has_its_own_rows_and_an_example_that_it_answers(client, trained, document):
    _, ridge, sample = trained["ridge"]
    names = list(ridge.feature_names_in_)
    operation = document["paths"]["/models/ridge/predict"]["post"]
    content = operation["requestBody"]["content"]["application/json"]
    by_name, as_list = content["schema"]["properties"]["instances"]["items"]["anyOf"]
    assert list(by_name["properties"]) == names and by_name["required"] == names
    # a number, or null: a missing value is accepted
    assert all(value == {"anyOf": [{"type": "number"}, {"type": "null"}]} for value in by_name["properties"].values())
    assert as_list["minItems"] == as_list["maxItems"] == len(names)
    assert operation["tags"] == ["model ridge"]
    # the example is one the model answers, with the model's own prediction
    example = content["example"]
    answer = client.post("/models/ridge/predict", json=example)
    assert answer.status_code == 200
    import pandas as pd

    assert answer.get_json()["predictions"] == ridge.predict(pd.DataFrame(example["instances"])[names]).tolist()
    # versioned, too; and /predict shows the default model's (cancer: no feature names, 30 numbers)
    assert "/models/ridge/versions/1/predict" in document["paths"]
    rows = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert rows["properties"]["instances"]["items"]["minItems"] == 30


def test_a_text_models_rows_are_strings(client, document):
    schema = document["paths"]["/models/text/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["properties"]["instances"]["items"]["type"] == "string"
    assert client.post("/models/text/predict", json=schema["example"]).status_code == 200


def test_categories_of_a_model_are_an_enum(make_app, tmp_path):
    import joblib
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"plan": ["basic", "pro", "basic", "team"], "months": [1.0, 20.0, 3.0, 12.0]})
    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
                          LogisticRegression()).fit(frame, [0, 1, 0, 1])
    joblib.dump(model, tmp_path / "churn.joblib")
    client = make_app(MODELS=f"churn={tmp_path / 'churn.joblib'}").test_client()
    document = client.get("/openapi.json").get_json()
    content = document["paths"]["/models/churn/predict"]["post"]["requestBody"]["content"]["application/json"]
    by_name = content["schema"]["properties"]["instances"]["items"]["anyOf"][0]
    assert by_name["properties"]["plan"] == {"anyOf": [
        {"type": "string", "enum": ["basic", "pro", "team"], "examples": ["basic"]}, {"type": "null"}]}
    answer = client.post("/models/churn/predict", json=content["example"]).get_json()
    assert answer["predictions"] == model.predict(pd.DataFrame(content["example"]["instances"])).tolist()


def test_model_card_is_what_the_document_reads(client):
    registry = client.application.extensions["mlapi.services"].registry
    card = model_card(registry.get("diabetes"))
    assert [f["name"] for f in card["features"]] == registry.get("diabetes").feature_names


def test_api_docs_off_leaves_both_routes_out(make_app, trained):
    client = make_app(MODELS=models_env(trained, "cancer"), API_DOCS="off").test_client()
    assert client.get("/openapi.json").status_code == 404 and client.get("/docs").status_code == 404
    assert client.get("/healthz").status_code == 200
    # a wrong URL's 404 does not send the client to a document that is not served
    message = client.get("/nowhere").get_json()["error"]["message"]
    assert "GET /models lists the models" in message and "openapi.json" not in message


def test_a_wrong_urls_404_points_to_the_document_when_it_is_served(client):
    message = client.get("/nowhere").get_json()["error"]["message"]
    assert "GET /openapi.json every route" in message


def test_docs_with_a_trailing_slash_redirects_to_docs(client):
    response = client.get("/docs/")
    assert response.status_code == 308 and response.headers["Location"] == "../docs"
    # as a browser resolves it (RFC 3986; werkzeug's test client does not)
    target = urljoin("http://localhost:8080/docs/", response.headers["Location"])
    assert target == "http://localhost:8080/docs" and client.get(urlsplit(target).path).mimetype == "text/html"


def test_api_docs_token(make_app, trained, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    client = make_app(MODELS=models_env(trained, "cancer"), API_DOCS_TOKEN_FILE=str(secret)).test_client()
    for path in ("/openapi.json", "/docs", "/docs/swagger-ui.css"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.get_json()["error"]["status"] == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic ")
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        basic = base64.b64encode(b"anyone:s3cret").decode()
        assert client.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    # the API itself is not behind it
    assert client.post("/predict", json={"instances": [[0.0] * 30]}).status_code == 200


def test_operation_ids_are_unique_whatever_the_models_are_called(make_app, trained):
    # a model named `name` repeats /models/{name}/predict's id; `a-b` and `a_b` repeat each other's
    path = trained["cancer"][0]
    plain = make_app(MODELS=f"cancer={path}").test_client().get("/openapi.json").get_json()
    document = make_app(MODELS=f"cancer={path},name={path},a-b={path},a_b={path}").test_client() \
        .get("/openapi.json").get_json()
    ids = {(path, method): operation["operationId"] for path, operations in document["paths"].items()
           for method, operation in operations.items()}
    assert len(set(ids.values())) == len(ids)
    # the app's own routes keep their ids, whatever the models are called; a repeat gets _2, _3
    for path, operations in plain["paths"].items():
        for method, operation in operations.items():
            assert ids[(path, method)] == operation["operationId"], path
    assert ids[("/models/name/predict", "post")] == "post_models_name_predict_2"
    assert {ids[("/models/a-b/predict", "post")], ids[("/models/a_b/predict", "post")]} == {
        "post_models_a_b_predict", "post_models_a_b_predict_2"}


def test_categories_are_no_enum_where_other_values_are_taken_nor_when_there_are_many(make_app, tmp_path):
    import joblib
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    cities = [f"city{i:03d}" for i in range(60)]
    frame = pd.DataFrame({"plan": ["basic", "pro", "team"] * 20, "city": cities, "months": range(60)})
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                                  (OneHotEncoder(), ["city"]), remainder="passthrough"),
                          LogisticRegression()).fit(frame, [0, 1] * 30)
    joblib.dump(model, tmp_path / "open.joblib")
    client = make_app(MODELS=f"open={tmp_path / 'open.joblib'}").test_client()
    content = client.get("/openapi.json").get_json()["paths"]["/models/open/predict"]["post"]["requestBody"][
        "content"]["application/json"]
    properties = content["schema"]["properties"]["instances"]["items"]["anyOf"][0]["properties"]
    plan, missing = properties["plan"]["anyOf"]
    assert missing == {"type": "null"} and "enum" not in plan and "other values are taken" in plan["description"]
    city = properties["city"]["anyOf"][0]
    assert "enum" not in city and "One of 60 categories" in city["description"]
    # what the schema no longer forbids, the model answers
    other = client.post("/models/open/predict", json={"instances": [{"plan": "gold", "city": "city001", "months": 3}]})
    assert other.status_code == 200, other.get_json()


def test_an_unknown_categorys_422_lists_at_most_20_with_a_count(make_app, tmp_path):
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    cities = [f"city{i:03d}" for i in range(60)]
    model = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(pd.DataFrame({"city": cities}), [0, 1] * 30)
    joblib.dump(model, tmp_path / "cities.joblib")
    client = make_app(MODELS=f"cities={tmp_path / 'cities.joblib'}").test_client()
    error = client.post("/models/cities/predict", json={"instances": [{"city": "atlantis"}]}).get_json()["error"]
    assert error["status"] == 422 and error["categories"] == cities[:20] and error["category_count"] == 60
