"""gs:// artifacts against a real GCS emulator (gcp-storage-emulator, from PyPI) with the real
google-cloud-storage client; local paths; no copy on disk unless MODEL_CACHE_DIR asks for one,
and a copy named by its content, so an object overwritten at the same URI is downloaded again."""
import hashlib
import os
import uuid
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mlapi.errors import ArtifactError
from mlapi.serving.storage import cached_copy, content_name, read_artifact
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


def test_model_served_from_gs_uri_leaves_no_copy_on_disk(gcs, make_app, trained, tmp_path):
    # Cloud Run's disk is memory: a downloaded copy would stay there beside the loaded model.
    path, estimator, sample = trained["cancer"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    uri = f"gs://models-bucket/models/{uuid.uuid4().hex}/{digest}.joblib"
    gcs.blob(uri[len("gs://models-bucket/"):]).upload_from_filename(str(path))
    app = make_app(MODELS=f"cancer={uri}#sha256={digest}", MODEL_CACHE_DIR="")  # the default: unset
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    body = client.post("/predict", json={"instances": to_rows(sample)}).get_json()
    assert body["probabilities"] == estimator.predict_proba(sample).tolist()
    meta = client.get("/models/cancer/versions/1").get_json()
    assert meta["uri"] == uri and meta["sha256"] == digest
    # neither where copies used to go by default nor anywhere in the test's folder
    assert not cached_copy(uri, Path("/tmp/mlapi-models"), content_name(digest)).parent.parent.exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".db"]


def test_model_cache_dir_keeps_a_copy_for_the_next_start(gcs, trained, tmp_path):
    gcs.blob("m.joblib").upload_from_filename(str(trained["tree"][0]))
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    first = read_artifact("gs://models-bucket/m.joblib", tmp_path, emulator)
    generation = gcs.get_blob("m.joblib").generation
    copy = cached_copy("gs://models-bucket/m.joblib", tmp_path, content_name(generation=generation))
    assert copy.read_bytes() == first == trained["tree"][0].read_bytes()
    # The object is unchanged (same generation): the next start reads the copy, not the bucket.
    copy.write_bytes(b"the copy")
    assert read_artifact("gs://models-bucket/m.joblib", tmp_path, emulator) == b"the copy"
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".partial-")]


def test_a_pinned_copy_needs_no_bucket(gcs, make_app, trained, tmp_path):
    path = trained["tree"][0]
    gcs.blob("m.joblib").upload_from_filename(str(path))
    spec = f"m=gs://models-bucket/m.joblib#sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"
    assert make_app(MODELS=spec).test_client().get("/readyz").status_code == 200
    gcs.blob("m.joblib").delete()
    assert make_app(MODELS=spec).test_client().get("/readyz").status_code == 200


def copies(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


def test_an_object_overwritten_at_the_same_uri_is_downloaded_again(gcs, make_app, trained, tmp_path):
    # Unpinned: the object's generation names its copy, so the next start (a new app on the
    # same MODEL_CACHE_DIR) serves the new object, and the copy of the old one is removed.
    (old, _, _), (new, estimator, sample) = trained["tree"], trained["cancer"]
    uri, cache = "gs://models-bucket/models/m.joblib", tmp_path / "cache"
    gcs.blob("models/m.joblib").upload_from_filename(str(old))
    first = make_app(MODELS=f"m={uri}", MODEL_CACHE_DIR=cache).test_client()
    assert first.get("/models/m/versions/1").get_json()["sha256"] == hashlib.sha256(old.read_bytes()).hexdigest()
    assert [p.read_bytes() for p in copies(cache)] == [old.read_bytes()]

    gcs.blob("models/m.joblib").upload_from_filename(str(new))
    client = make_app(MODELS=f"m={uri}", MODEL_CACHE_DIR=cache).test_client()
    assert client.get("/models/m/versions/1").get_json()["sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()
    body = client.post("/predict", json={"instances": to_rows(sample)}).get_json()
    assert body["probabilities"] == estimator.predict_proba(sample).tolist()
    generation = gcs.get_blob("models/m.joblib").generation
    assert copies(cache) == [cached_copy(uri, cache, content_name(generation=generation))]
    assert copies(cache)[0].read_bytes() == new.read_bytes()


def test_a_new_pin_at_the_same_uri_is_downloaded_again(gcs, make_app, trained, tmp_path):
    # Pinned: the pin names the copy. A copy from before copies were named by content (one
    # file per URI) is neither trusted nor kept.
    old, new = trained["tree"][0], trained["cancer"][0]
    uri, cache = "gs://models-bucket/m.joblib", tmp_path / "cache"
    legacy = cached_copy(uri, cache, "x").parent.parent / "m.joblib"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(old.read_bytes())
    gcs.blob("m.joblib").upload_from_filename(str(new))
    digest = hashlib.sha256(new.read_bytes()).hexdigest()
    client = make_app(MODELS=f"m={uri}#sha256={digest}", MODEL_CACHE_DIR=cache).test_client()
    assert client.get("/readyz").status_code == 200
    assert copies(cache) == [cached_copy(uri, cache, content_name(digest))]


def test_a_download_its_pin_refuses_leaves_no_copy(gcs, make_app, trained, tmp_path):
    # Kept, it would be refused at every start, even once the bucket holds the pinned object.
    good, other = trained["tree"][0], trained["cancer"][0]
    spec = f"m=gs://models-bucket/m.joblib#sha256={hashlib.sha256(good.read_bytes()).hexdigest()}"
    gcs.blob("m.joblib").upload_from_filename(str(other))
    ready = make_app(MODELS=spec).test_client().get("/readyz")
    assert ready.status_code == 503 and "sha256 mismatch" in ready.get_json()["failures"][0]["error"]
    assert not copies(tmp_path / "cache")
    gcs.blob("m.joblib").upload_from_filename(str(good))
    assert make_app(MODELS=spec).test_client().get("/readyz").status_code == 200


def test_a_cached_copy_is_pinned_like_a_download(gcs, make_app, trained, tmp_path):
    # The copy on disk is read and hashed like any file: one rewritten there is refused.
    good, other = trained["tree"][0], trained["cancer"][0]
    gcs.blob("m.joblib").upload_from_filename(str(good))
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    spec = f"m=gs://models-bucket/m.joblib#sha256={digest}"
    assert make_app(MODELS=spec, MODEL_CACHE_DIR=cache).test_client().get("/readyz").status_code == 200
    cached_copy("gs://models-bucket/m.joblib", cache, content_name(digest)).write_bytes(other.read_bytes())
    ready = make_app(MODELS=spec, MODEL_CACHE_DIR=cache).test_client().get("/readyz")
    assert ready.status_code == 503 and "sha256 mismatch" in ready.get_json()["failures"][0]["error"]


def test_missing_object_gives_readyz_503(gcs, make_app, tmp_path):
    client = make_app(MODEL_URI="gs://models-bucket/absent.joblib", MODEL_CACHE_DIR=str(tmp_path / "cache")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "could not download gs://models-bucket/absent.joblib" in response.get_json()["failures"][0]["error"]
    assert not list(tmp_path.rglob("*.joblib"))  # no partial artifact left behind


@pytest.mark.parametrize("uri,needle", [("s3://b/m.joblib", "unsupported"), ("gs://bucket-only", "bucket and an object"),
                                        ("/no/such/file.joblib", "not found")])
def test_bad_uris(uri, needle, tmp_path):
    with pytest.raises(ArtifactError, match=needle):
        read_artifact(uri, tmp_path)
