"""gs:// artifacts against a real GCS emulator (gcp-storage-emulator, from PyPI) with the real
google-cloud-storage client; local paths; the per-instance download cache."""
import os
import hashlib

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mlapi.errors import ArtifactError
from mlapi.serving.storage import resolve_artifact
from conftest import free_port, to_rows


@pytest.fixture
def gcs(monkeypatch):
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    client.create_bucket("models-bucket")
    yield client.bucket("models-bucket")
    server.stop()


def test_model_served_from_gs_uri(gcs, make_app, trained, tmp_path):
    path, estimator, sample = trained["cancer"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    gcs.blob(f"models/{digest}.joblib").upload_from_filename(str(path))
    uri = f"gs://models-bucket/models/{digest}.joblib"
    app = make_app(MODELS=f"cancer={uri}#sha256={digest}", MODEL_CACHE_DIR=str(tmp_path / "cache"))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    body = client.post("/predict", json={"instances": to_rows(sample)}).get_json()
    assert body["probabilities"] == estimator.predict_proba(sample).tolist()
    meta = client.get("/models/cancer/versions/1").get_json()
    assert meta["uri"] == uri and meta["sha256"] == digest


def test_download_happens_once_per_instance(gcs, trained, tmp_path):
    gcs.blob("m.joblib").upload_from_filename(str(trained["tree"][0]))
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    first = resolve_artifact("gs://models-bucket/m.joblib", tmp_path, emulator)
    gcs.blob("m.joblib").delete()  # a second resolve must not need the bucket
    second = resolve_artifact("gs://models-bucket/m.joblib", tmp_path, emulator)
    assert first == second and first.read_bytes() == trained["tree"][0].read_bytes()
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".partial-")]


def test_missing_object_gives_readyz_503(gcs, make_app, tmp_path):
    client = make_app(MODEL_URI="gs://models-bucket/absent.joblib", MODEL_CACHE_DIR=str(tmp_path)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "could not download gs://models-bucket/absent.joblib" in response.get_json()["failures"][0]["error"]
    assert not list(tmp_path.rglob("*.joblib"))  # no partial artifact left behind


@pytest.mark.parametrize("uri,needle", [("s3://b/m.joblib", "unsupported"), ("gs://bucket-only", "bucket and an object"),
                                        ("/no/such/file.joblib", "not found")])
def test_bad_uris(uri, needle, tmp_path):
    with pytest.raises(ArtifactError, match=needle):
        resolve_artifact(uri, tmp_path)
