"""Artifact URI → the artifact's bytes: a local file read once, gs:// downloaded into memory.

The bytes are read once and both hashed and unpickled from memory (serving/loading.py), so the
file cannot change between the sha256 check and the load. A gs:// artifact is not written to
disk: on Cloud Run the disk is memory, and a copy there would stay for the instance's life
beside the loaded model. MODEL_CACHE_DIR, when set, keeps a copy for the next start on the
same disk (a local run, a persistent volume).

google-cloud-storage is imported only when a gs:// URI is used (extra `gcs`), so a local-only
install does not need it. The client honours STORAGE_EMULATOR_HOST, which the tests use to
run the real client against an emulator.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from mlapi.errors import ArtifactError

log = logging.getLogger(__name__)


def read_artifact(uri: str, cache_dir: str | os.PathLike | None = None, emulator_host: str | None = None,
                  project: str | None = None) -> bytes:
    """The bytes of the artifact named by `uri`, read once."""
    if uri.startswith("gs://"):
        return _download_gcs(uri, Path(cache_dir) if cache_dir else None, emulator_host, project)
    if "://" in uri:
        raise ArtifactError(f"unsupported artifact URI scheme in {uri!r} (use a local path or gs://)")
    path = Path(uri).expanduser()
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ArtifactError(f"model artifact not found: {path}") from None
    except OSError as exc:
        raise ArtifactError(f"could not read {path}: {exc.strerror or exc}") from exc


def split_gcs_uri(uri: str) -> tuple[str, str]:
    bucket, _, blob = uri[len("gs://"):].partition("/")
    if not bucket or not blob:
        raise ArtifactError(f"gs:// URI needs a bucket and an object path: {uri!r}")
    return bucket, blob


def cached_copy(uri: str, cache_dir: Path) -> Path:
    """Where MODEL_CACHE_DIR keeps a gs:// artifact: one entry per URI (a new model gets a new,
    content-addressed name, so an entry never goes stale)."""
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return cache_dir / key / Path(split_gcs_uri(uri)[1]).name


def _download_gcs(uri: str, cache_dir: Path | None, emulator_host: str | None, project: str | None) -> bytes:
    bucket_name, blob_name = split_gcs_uri(uri)
    target = cached_copy(uri, cache_dir) if cache_dir is not None else None
    if target is not None and target.is_file():
        log.info("model artifact %s read from its copy at %s (MODEL_CACHE_DIR)", uri, target)
        return target.read_bytes()
    try:
        from google.cloud import storage
    except ImportError:  # pragma: no cover - depends on the install
        raise ArtifactError("gs:// model URIs need google-cloud-storage: pip install 'mlapi[gcs]'") from None
    try:
        client = _gcs_client(storage, emulator_host, project)
        data = client.bucket(bucket_name).blob(blob_name).download_as_bytes()
    except Exception as exc:  # the client raises many types (NotFound, auth, transport)
        raise ArtifactError(f"could not download {uri}: {exc.__class__.__name__}: {exc}") from exc
    log.info("downloaded model artifact %s (%d bytes) into memory", uri, len(data))
    if target is not None:
        _keep_copy(data, target)
    return data


def _keep_copy(data: bytes, target: Path) -> None:
    """Write beside the target and rename, so a crash never leaves a partial file that a later
    start would take for the artifact. A copy that cannot be written costs the next start a
    download, nothing more."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    except OSError as exc:
        log.warning("could not keep a copy of the model artifact at %s (MODEL_CACHE_DIR): %s", target, exc)


def _gcs_client(storage, emulator_host: str | None, project: str | None):
    # emulator_host and project come from Settings (STORAGE_EMULATOR_HOST, the project rule);
    # the client library reads STORAGE_EMULATOR_HOST itself too, for the endpoint.
    if emulator_host:
        # The emulator accepts anonymous requests; real credentials would be refused by it.
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "emulator", credentials=AnonymousCredentials())
    return storage.Client(project=project)
