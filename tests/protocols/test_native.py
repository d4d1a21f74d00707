"""The native JSON codec as plain functions: bodies → PredictRequest, results → bodies."""
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from types import SimpleNamespace

from mlapi.errors import BadRequest
from mlapi.protocols import native
from mlapi.serving.instances import Columns
from mlapi.serving.model import PredictionResult

MODEL = SimpleNamespace(name="churn", version="2")


@pytest.mark.parametrize("key", ["instances", "inputs", "dataframe_records"])
def test_list_shapes_pass_through(key):
    rows = [[1, 2], {"a": 1}, "text"]
    assert native.decode_predict({key: rows}) == native.PredictRequest(rows, None)


def test_dataframe_split_with_and_without_columns():
    named = native.decode_predict({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]},
                                   "parameters": {"probabilities": False}})
    assert named.instances == Columns(["a", "b"], [[1, 2]]) and named.probabilities is False
    assert native.decode_predict({"dataframe_split": {"data": [[1, 2]]}}).instances == [[1, 2]]


def test_pandas_split_orientation_with_its_index():
    # What `df.to_dict(orient="split")` gives: the index is ignored.
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    request = native.decode_predict({"dataframe_split": frame.to_dict(orient="split")})
    assert request.instances == Columns(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])


@pytest.mark.parametrize("body,message", [
    ({}, "the body needs exactly one of ['instances', 'inputs', 'dataframe_split', 'dataframe_records'], "
         'e.g. {"instances": [[5.1, 3.5, 1.4, 0.2]]}; found none'),
    ({"instances": [], "inputs": []}, "the body needs exactly one of ['instances', 'inputs', 'dataframe_split', "
                                      """'dataframe_records'], e.g. {"instances": [[5.1, 3.5, 1.4, 0.2]]}; found """
                                      "['instances', 'inputs']"),
    ({"instances": {"a": 1}}, '"instances" must be a list such as [[5.1,3.5,1.4,0.2]], got {"a":1}'),
    ({"instances": None}, '"instances" must be a list such as [[5.1,3.5,1.4,0.2]], got null'),
    ({"dataframe_split": [[1]]}, '"dataframe_split" must be an object such as {"columns":["sepal_length",'
                                 '"sepal_width","petal_length","petal_width"],"data":[[5.1,3.5,1.4,0.2]]}, got [[1]]'),
    ({"dataframe_split": {"data": 5}}, '"dataframe_split.data" must be a list such as [[5.1,3.5,1.4,0.2]], got 5'),
    ({"dataframe_split": {"columns": ["a"]}}, '"dataframe_split" needs "data", e.g. {"data":[[5.1,3.5,1.4,0.2]]}'),
    ({"dataframe_split": {"columns": [1], "data": [[1]]}},
     '"dataframe_split.columns" must be a list of strings or null such as ["sepal_length","sepal_width",'
     '"petal_length","petal_width"], got 1 at dataframe_split.columns[0]'),
    ({"instances": [[1]], "parameters": []},
     '"parameters" must be an object or null such as {"probabilities":false}, got []'),
    ({"instances": [[1]], "parameters": {"probabilities": "yes"}},
     '"parameters.probabilities" must be true or false or null, got "yes"'),
])
def test_malformed_bodies_are_400_saying_what_to_send(body, message):
    with pytest.raises(BadRequest) as raised:
        native.decode_predict(body)
    assert raised.value.status_code == 400 and raised.value.message == message


@pytest.mark.parametrize("body,expected", [({}, None), ({"parameters": None}, None),
                                           ({"parameters": {}}, None),
                                           ({"parameters": {"probabilities": True}}, True),
                                           ({"parameters": {"probabilities": False, "other": 1}}, False)])
def test_probabilities_flag(body, expected):
    assert native.decode_predict({"instances": [[1]], **body}).probabilities is expected
    assert native.decode_feature_matrix({"features": [[1]], **body}).probabilities is expected


@pytest.mark.parametrize("key", ["features", "instances", "inputs"])
def test_features_body(key):
    assert native.decode_feature_matrix({key: [[0.5]]}).instances == [[0.5]]


def test_features_body_takes_the_first_key_and_any_value():
    # The values are the model's to judge (422 from serving/instances.py), not the codec's.
    assert native.decode_feature_matrix({"inputs": 1, "features": {"format": "csr"}}).instances == {"format": "csr"}
    assert native.decode_feature_matrix({"features": None}).instances is None


def test_features_body_needs_features():
    with pytest.raises(BadRequest) as raised:
        native.decode_feature_matrix({"rows": [[0.5]]})
    assert raised.value.status_code == 400
    assert raised.value.message == 'the body needs "features": dense rows or the CSR object /features returns'


def test_encode_prediction_with_and_without_probabilities():
    plain = native.encode_prediction(MODEL, PredictionResult([1.5, 2.5]))
    assert plain == {"model": {"name": "churn", "version": "2"}, "predictions": [1.5, 2.5]}
    ranked = native.encode_prediction(MODEL, PredictionResult(["a"], [[0.75, 0.25]], ["a", "b"]))
    assert ranked["probabilities"] == [[0.75, 0.25]] and ranked["classes"] == ["a", "b"]


def test_encode_features_dense_frame_and_csr():
    dense = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert native.encode_features(MODEL, dense)["features"] == [[1.0, 0.0], [0.0, 2.0]]
    assert native.encode_features(MODEL, pd.DataFrame(dense))["features"] == [[1.0, 0.0], [0.0, 2.0]]
    csr = native.encode_features(MODEL, sparse.csr_matrix(dense))["features"]
    assert csr == {"format": "csr", "shape": [2, 2], "data": [1.0, 2.0], "indices": [0, 1], "indptr": [0, 1, 2]}


def test_the_generic_examples_are_rows_the_demo_iris_model_takes():
    # What /openapi.json shows for any model (and a 400 quotes) can be sent as it is to the demo
    # model `make run` serves: its feature names, one setosa row.
    from mlapi.cli.demo_models import train_iris
    from mlapi.protocols.request_bodies import PredictBody
    from mlapi.protocols.validation import json_schema
    from mlapi.serving.instances import to_model_input
    from mlapi.serving.model import ServedModel

    iris = ServedModel("iris", "1", train_iris())
    schemas = json_schema(PredictBody)["$defs"]
    body, split = schemas["PredictBody"]["properties"], schemas["DataframeSplit"]["properties"]
    columns = split["columns"]["examples"][0]
    assert iris.feature_names == columns
    bodies = [PredictBody.example, {"instances": body["instances"]["examples"][0]},
              {"dataframe_records": body["dataframe_records"]["examples"][0]},
              {"dataframe_split": {"columns": columns, "data": split["data"]["examples"][0]}}]
    for body in bodies:
        request = native.decode_predict(body)
        assert iris.predict(to_model_input(iris, request.instances)).predictions == ["setosa"], body
