"""Typed settings, read once from the environment at start-up.

Every setting the server understands is declared here with its default and why it exists;
`example.env` and the README's settings table mirror this module. Nothing else in `app`
reads `os.environ` for configuration.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from mlapi.errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class ModelSpec:
    """One entry of MODELS: which artifact to serve under which name and version."""

    name: str
    version: str
    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class Settings:
    # Port the server binds on 0.0.0.0; Cloud Run injects PORT.
    port: int = 8080
    # What to serve, in order; the first entry's name is the default model.
    models: tuple[ModelSpec, ...] = ()
    # Where gs:// artifacts are downloaded to, once per instance.
    model_cache_dir: str = "/tmp/mlapi-models"
    # Refuse (rather than warn about) a pickle made by another scikit-learn version.
    strict_sklearn_version: bool = False
    # Let pandas load pyarrow in the server process (off: ~34 MB less per instance; see app/wsgi.py).
    server_pyarrow: bool = False
    # Bodies larger than this are refused with 413 before they are parsed.
    max_request_bytes: int = 10 * 1024 * 1024
    # Micro-batching: concurrent requests for one model version answered by one predict call
    # of at most this many rows (0 or 1: off). `mlapi serve` then runs threads per worker.
    max_batch_size: int = 0
    # The longest a request under load waits, from its arrival, for rows to join its batch
    # (never when idle).
    max_batch_wait_ms: float = 0.0
    # Entries kept by the in-process prediction cache (0 turns it off).
    prediction_cache_size: int = 10_000
    # Python logging level name for the app's own log lines.
    log_level: str = "INFO"
    # "json": one Cloud Logging object per line; "text": plain readable lines.
    log_format: str = "json"
    # Also log one line per request (with httpRequest); Cloud Run already logs every request.
    access_log: bool = False
    # Project for trace links in logs (Cloud Run does not set it: `make deploy` does).
    google_cloud_project: str | None = None
    # When set, GET /metrics requires "Authorization: Bearer <token>".
    metrics_token: str | None = field(default=None, repr=False)
    # The online feature store that predict-by-id reads (read-only credentials suffice).
    feature_store_url: str = "sqlite:///data/features.db"
    # Where ingestion writes the store; defaults to feature_store_url.
    feature_store_write_url: str = "sqlite:///data/features.db"
    feature_table: str = "features"
    feature_id_column: str = "id"
    feature_text_column: str = "text"
    # The application's own database that `mlapi features add` writes (seed 000); unset:
    # records go straight into the online store.
    source_db_url: str | None = None
    source_table: str = "records"
    # Where batch (Pub/Sub) predictions and poison-message failures are written.
    predictions_db_url: str = "sqlite:///data/predictions.db"
    # Extra, unparsed environment the settings were built from (for diagnostics only).
    source: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def default_model(self) -> str | None:
        return self.models[0].name if self.models else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        models_value = env.get("MODELS", "").strip()
        if models_value:
            models = parse_models(models_value)
        else:
            uri = env.get("MODEL_URI", "models/latest.joblib").strip()
            uri, sha = split_digest(uri)
            sha = sha or (env.get("MODEL_SHA256") or "").strip().lower() or None
            models = (ModelSpec(env.get("MODEL_NAME", "latest").strip() or "latest", "1", uri, sha),)
        feature_store_url = env.get("FEATURE_STORE_URL") or "sqlite:///data/features.db"
        return cls(
            port=_int(env, "PORT", 8080, minimum=1),
            models=models,
            model_cache_dir=env.get("MODEL_CACHE_DIR", "/tmp/mlapi-models"),
            strict_sklearn_version=_bool(env, "STRICT_SKLEARN_VERSION", False),
            server_pyarrow=_bool(env, "SERVER_PYARROW", False),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1),
            prediction_cache_size=_int(env, "PREDICTION_CACHE_SIZE", 10_000, minimum=0),
            max_batch_size=_int(env, "MAX_BATCH_SIZE", 0, minimum=0),
            max_batch_wait_ms=_float(env, "MAX_BATCH_WAIT_MS", 0.0),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            log_format=_choice(env, "LOG_FORMAT", "json", ("json", "text")),
            access_log=_bool(env, "ACCESS_LOG", False),
            google_cloud_project=env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT_ID") or None,
            metrics_token=env.get("METRICS_TOKEN") or None,
            feature_store_url=feature_store_url,
            feature_store_write_url=env.get("FEATURE_STORE_WRITE_URL") or feature_store_url,
            feature_table=_identifier(env, "FEATURE_TABLE", "features"),
            feature_id_column=_identifier(env, "FEATURE_ID_COLUMN", "id"),
            feature_text_column=_identifier(env, "FEATURE_TEXT_COLUMN", "text"),
            source_db_url=env.get("SOURCE_DB_URL") or None,
            source_table=_identifier(env, "SOURCE_TABLE", "records"),
            predictions_db_url=env.get("PREDICTIONS_DB_URL") or "sqlite:///data/predictions.db",
            source=env,
        )


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DIGEST = re.compile(r"#sha256=([0-9a-fA-F]{64})$")


def split_digest(uri: str) -> tuple[str, str | None]:
    """`path#sha256=<hex>` → (path, hex); the digest pins the artifact's content."""
    match = _DIGEST.search(uri)
    if not match:
        if "#sha256=" in uri:
            raise ConfigurationError(f"malformed #sha256= digest in model URI {uri!r} (need 64 hex digits)")
        return uri, None
    return uri[: match.start()], match.group(1).lower()


def parse_models(value: str) -> tuple[ModelSpec, ...]:
    """Parse `name=URI` / `name:version=URI` entries, comma-separated.

    An entry without a version gets its position among its name's entries ("1", "2", ...),
    so `a=x.joblib,a=y.joblib` serves versions 1 and 2 and requests default to 2.
    """
    specs: list[ModelSpec] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if "=" not in entry:
            raise ConfigurationError(f"MODELS entry {entry!r} is not name=URI or name:version=URI")
        key, uri = (part.strip() for part in entry.split("=", 1))
        name, _, version = key.partition(":")
        if not version:
            version = str(1 + sum(1 for spec in specs if spec.name == name))
        for label, part in (("name", name), ("version", version)):
            if not _NAME.match(part):
                raise ConfigurationError(
                    f"MODELS entry {entry!r}: model {label} {part!r} must be letters, digits, '_', '.' or '-'")
        if not uri:
            raise ConfigurationError(f"MODELS entry {entry!r} has an empty URI")
        if any(spec.name == name and spec.version == version for spec in specs):
            raise ConfigurationError(f"MODELS lists {name}:{version} twice")
        uri, sha = split_digest(uri)
        specs.append(ModelSpec(name, version, uri, sha))
    if not specs:
        raise ConfigurationError("MODELS is set but lists no model")
    return tuple(specs)


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(env: Mapping[str, str], key: str, default: str) -> str:
    # Table and column names end up in SQL: accept plain identifiers only.
    value = (env.get(key) or default).strip()
    if not _IDENTIFIER.match(value):
        raise ConfigurationError(f"{key}={value!r} must be a plain SQL identifier (letters, digits, _)")
    return value


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(key) or default).strip().lower()
    if value not in choices:
        raise ConfigurationError(f"{key}={value!r} must be one of {', '.join(choices)}")
    return value


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a number") from None
    if not 0 <= value <= 1000:
        raise ConfigurationError(f"{key}={value} must be between 0 and 1000")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{key}={raw!r} is not a boolean (use 1/0, true/false)")


def _int(env: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = env.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigurationError(f"{key}={value} must be at least {minimum}")
    return value
