"""A .skops artifact from gs://, against the Cloud Storage emulator (test_storage.py's), pinned:
the pin hashes the downloaded bytes skops loads, and the format comes from the object's name."""
import hashlib

from conftest import service_missing

try:
    import google.cloud.storage  # noqa: F401
    import skops.io as skops_io
except ImportError as missing:  # pragma: no cover - a virtualenv without the extras
    service_missing(f"{missing.name} is not installed (extras skops and gcs: make install-dev)", module=True)

from test_storage import gcs  # noqa: E402,F401  (the emulator fixture)


def test_a_pinned_skops_artifact_from_gs(gcs, make_app, trained, tmp_path):  # noqa: F811
    _, text, texts = trained["text"]
    path = tmp_path / "text.skops"
    skops_io.dump(text, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    gcs.blob(f"models/{digest}.skops").upload_from_filename(str(path))
    uri = f"gs://models-bucket/models/{digest}.skops"
    client = make_app(MODELS=f"text={uri}#sha256={digest}", MODEL_CACHE_DIR="").test_client()
    answer = client.post("/models/text/predict", json={"instances": texts}).get_json()
    assert answer["probabilities"] == text.predict_proba(texts).tolist()
    described = client.get("/models/text/versions/1").get_json()
    assert (described["format"], described["sha256"], described["uri"]) == ("skops", digest, uri)
    # Another object under the pinned name: refused by the pin before skops reads it.
    gcs.blob(f"models/{digest}.skops").upload_from_string(path.read_bytes() + b"\0")
    failure = make_app(MODELS=f"text={uri}#sha256={digest}", MODEL_CACHE_DIR="").test_client() \
        .get("/readyz").get_json()["failures"][0]
    assert "sha256 mismatch" in failure["error"] and failure["format"] == "skops"
