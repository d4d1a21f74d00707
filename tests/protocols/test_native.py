"""The native JSON codec as plain functions: bodies → PredictRequest, results → bodies."""
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from types import SimpleNamespace

from mlapi.errors import BadRequest
from mlapi.protocols import native
from mlapi.serving.inputs import Columns
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


@pytest.mark.parametrize("body,message", [
    ({}, "exactly one of"),
    ({"instances": [], "inputs": []}, "exactly one of"),
    ({"instances": {"a": 1}}, "'instances' must be a list"),
    ({"dataframe_split": [[1]]}, "dataframe_split must be"),
    ({"dataframe_split": {"data": 5}}, "dataframe_split must be"),
    ({"dataframe_split": {"columns": [1], "data": [[1]]}}, "columns must be a list of strings"),
    ({"instances": [[1]], "parameters": []}, "parameters must be an object"),
    ({"instances": [[1]], "parameters": {"probabilities": "yes"}}, "probabilities must be true or false"),
])
def test_malformed_bodies_are_400(body, message):
    with pytest.raises(BadRequest) as raised:
        native.decode_predict(body)
    assert raised.value.status_code == 400 and message in raised.value.message


@pytest.mark.parametrize("body,expected", [({}, None), ({"parameters": None}, None),
                                           ({"parameters": {"probabilities": True}}, True)])
def test_probabilities_flag(body, expected):
    assert native.decode_probabilities(body) is expected


@pytest.mark.parametrize("key", ["features", "instances", "inputs"])
def test_features_body(key):
    assert native.decode_features({key: [[0.5]]}) == [[0.5]]


def test_features_body_needs_features():
    with pytest.raises(BadRequest) as raised:
        native.decode_features({"rows": [[0.5]]})
    assert raised.value.status_code == 400 and '"features"' in raised.value.message


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
