"""Artifact URI → the artifact's bytes: a local file read once, gs:// downloaded into memory.

The bytes are read once and both hashed and unpickled from memory (serving/loading.py), so the
file cannot change between the sha256 check and the load. A gs:// artifact is not written to
disk: on Cloud Run the disk is memory, and a copy there would stay for the instance's life
beside the loaded model. MODEL_CACHE_DIR, when set, keeps a copy for the next start on the
same disk (a local run, a persistent volume).

A copy is named by the content it holds, never by the URI alone: an object overwritten at the
same gs:// path must be downloaded again, not served stale from the copy. A pinned artifact's
copy is named by its sha256 pin (a start then needs no request to the bucket at all); an
unpinned one's by the object's generation, which Cloud Storage changes whenever the object's
data is replaced, read with one metadata request at each start. One copy is kept per URI: a new
one replaces the copies of the content before it.

google-cloud-storage is imported only when a gs:// URI is used (extra `gcs`), so a local-only
install does not need it. The client honours STORAGE_EMULATOR_HOST, which the tests use to
run the real client against an emulator.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mlapi.errors import ArtifactError

log = logging.getLogger(__name__)


def read_artifact(uri: str, cache_dir: str | os.PathLike | None = None, emulator_host: str | None = None,
                  project: str | None = None, sha256: str | None = None) -> bytes:
    """The bytes of the artifact named by `uri`, read once. `sha256`, the artifact's pin, names
    its copy in `cache_dir`; the caller checks the bytes against it."""
    if uri.startswith("gs://"):
        return _download_gcs(uri, Path(cache_dir) if cache_dir else None, emulator_host, project, sha256)
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


def cached_copy(uri: str, cache_dir: Path, content: str) -> Path:
    """Where MODEL_CACHE_DIR keeps a gs:// artifact: a folder per URI, holding one folder per
    content (`sha256-<pin>` or `generation-<n>`: content_name), so changed content never finds
    an old copy."""
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return cache_dir / key / content / Path(split_gcs_uri(uri)[1]).name


def content_name(sha256: str | None = None, generation: int | None = None) -> str:
    """What names a copy's content: the pin when there is one, else the object's generation."""
    return f"sha256-{sha256}" if sha256 else f"generation-{generation}"


def _download_gcs(uri: str, cache_dir: Path | None, emulator_host: str | None, project: str | None,
                  sha256: str | None) -> bytes:
    blob = target = None
    if cache_dir is not None:
        if not sha256:  # the object's generation names its content: one metadata request
            blob = _blob(uri, emulator_host, project, metadata=True)
        target = cached_copy(uri, cache_dir, content_name(sha256, blob and blob.generation))
        if target.is_file():
            log.info("model artifact %s read from its copy at %s (MODEL_CACHE_DIR)", uri, target)
            return target.read_bytes()
    if blob is None:
        blob = _blob(uri, emulator_host, project, metadata=False)
    try:
        # A blob read with its metadata downloads that very generation (not whatever replaced
        # it since), so the copy holds the content its name says.
        data = blob.download_as_bytes()
    except Exception as exc:  # the client raises many types (NotFound, auth, transport)
        raise ArtifactError(f"could not download {uri}: {exc.__class__.__name__}: {exc}") from exc
    log.info("downloaded model artifact %s (%d bytes) into memory", uri, len(data))
    # A copy kept under a pin it does not match would be refused at every start, even once the
    # bucket holds the right object: keep only what the pin names (loading refuses the rest).
    if target is not None and (not sha256 or hashlib.sha256(data).hexdigest() == sha256):
        _keep_copy(data, target)
    return data


def _blob(uri: str, emulator_host: str | None, project: str | None, metadata: bool):
    """The object's handle; with `metadata`, read with its metadata (one request: its
    generation names the copy), and ArtifactError when there is no such object."""
    bucket_name, blob_name = split_gcs_uri(uri)
    try:
        from google.cloud import storage
    except ImportError:  # pragma: no cover - depends on the install
        raise ArtifactError("gs:// model URIs need google-cloud-storage: pip install 'mlapi[gcs]'") from None
    try:
        bucket = _gcs_client(storage, emulator_host, project).bucket(bucket_name)
        blob = bucket.get_blob(blob_name) if metadata else bucket.blob(blob_name)
    except Exception as exc:  # as for the download: auth, transport, a bad bucket name
        raise ArtifactError(f"could not download {uri}: {exc.__class__.__name__}: {exc}") from exc
    if blob is None:
        raise ArtifactError(f"could not download {uri}: NotFound: no such object in the bucket")
    return blob


def _keep_copy(data: bytes, target: Path) -> None:
    """Write beside the target and rename, so a crash never leaves a partial file that a later
    start would take for the artifact; then remove the URI's other copies (content it held
    before). A copy that cannot be written costs the next start a download, nothing more."""
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
        return
    try:
        for older in target.parent.parent.iterdir():
            if older == target.parent:
                continue
            if older.is_dir():
                shutil.rmtree(older)
            else:  # a copy kept before copies were named by their content
                older.unlink()
    except OSError as exc:  # another process removing the same copy; the next write retries
        log.warning("could not remove an older copy of the model artifact beside %s: %s", target, exc)

def _gcs_client(storage, emulator_host: str | None, project: str | None):
    # emulator_host and project come from Settings (STORAGE_EMULATOR_HOST, the project rule);
    # the client library reads STORAGE_EMULATOR_HOST itself too, for the endpoint.
    if emulator_host:
        # The emulator accepts anonymous requests; real credentials would be refused by it.
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "emulator", credentials=AnonymousCredentials())
    return storage.Client(project=project)
