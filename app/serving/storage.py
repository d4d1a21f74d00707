"""Artifact URI → local file: local paths as they are, gs:// downloaded once per instance.

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

_CHUNK = 1024 * 1024


def resolve_artifact(uri: str, cache_dir: str | os.PathLike, emulator_host: str | None = None,
                     project: str | None = None) -> Path:
    """Return a local path holding the artifact named by `uri`."""
    if uri.startswith("gs://"):
        return _download_gcs(uri, Path(cache_dir), emulator_host, project)
    if "://" in uri:
        raise ArtifactError(f"unsupported artifact URI scheme in {uri!r} (use a local path or gs://)")
    path = Path(uri).expanduser()
    if not path.is_file():
        raise ArtifactError(f"model artifact not found: {path}")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_gcs_uri(uri: str) -> tuple[str, str]:
    bucket, _, blob = uri[len("gs://"):].partition("/")
    if not bucket or not blob:
        raise ArtifactError(f"gs:// URI needs a bucket and an object path: {uri!r}")
    return bucket, blob


def _download_gcs(uri: str, cache_dir: Path, emulator_host: str | None, project: str | None) -> Path:
    bucket_name, blob_name = split_gcs_uri(uri)
    # One cache entry per URI: a new model gets a new (content-addressed) name, so an
    # entry never goes stale, and instances restarted on the same disk skip the download.
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache_dir / key / Path(blob_name).name
    if target.is_file():
        log.info("model artifact %s already cached at %s", uri, target)
        return target
    try:
        from google.cloud import storage
    except ImportError:  # pragma: no cover - depends on the install
        raise ArtifactError("gs:// model URIs need google-cloud-storage: pip install 'mlapi[gcs]'") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        client = _gcs_client(storage, emulator_host, project)
        blob = client.bucket(bucket_name).blob(blob_name)
        # Download beside the target and rename, so a crash never leaves a partial file
        # that a later start would take for the artifact.
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        os.close(fd)
        try:
            blob.download_to_filename(partial)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    except ArtifactError:
        raise
    except Exception as exc:  # the client raises many types (NotFound, auth, transport)
        raise ArtifactError(f"could not download {uri}: {exc.__class__.__name__}: {exc}") from exc
    log.info("downloaded model artifact %s to %s", uri, target)
    return target


def _gcs_client(storage, emulator_host: str | None, project: str | None):
    # emulator_host and project come from Settings (STORAGE_EMULATOR_HOST, the project rule);
    # the client library reads STORAGE_EMULATOR_HOST itself too, for the endpoint.
    if emulator_host:
        # The emulator accepts anonymous requests; real credentials would be refused by it.
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "emulator", credentials=AnonymousCredentials())
    return storage.Client(project=project)
