"""Typed settings, read once from the environment at start-up.

Every setting the server, `mlapi serve` and the other `mlapi` commands understand is declared
here with its default and why it exists; `example.env` and the README's settings table mirror
this module. Nothing else in `app` reads `os.environ` for configuration: a bad value is one
ConfigurationError naming the variable and what it expects, raised before anything starts.
(Client libraries read their own variables: GOOGLE_APPLICATION_CREDENTIALS, PUBSUB_EMULATOR_HOST.)
MODELS' grammar (ModelSpec, parse_models) is naming.py's.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from mlapi.errors import ConfigurationError
from mlapi.naming import SHA256_HEX, ModelSpec, parse_models, split_digest
from mlapi.secret_settings import admin_token, api_keys, secret_file, text as _text

_TRUE = {"1", "true", "yes", "on"}

# What a .skops artifact may hold beyond the types skops trusts by itself (scikit-learn's
# estimators, builtins, numpy arrays and ufuncs) when SKOPS_TRUSTED_TYPES is unset (its word
# `default`): the plain-data helpers common scikit-learn models hold, measured with
# skops.io.get_untrusted_types (skops 0.16, scikit-learn 1.9). None runs code when built.
# Left out on purpose: sklearn.tree._tree.Tree (every tree, forest and gradient boosting),
# HistGradientBoosting's TreePredictor and the neighbours' KDTree / BallTree hold node indices
# that compiled code follows unchecked: a crafted file makes predict read out of bounds or crash
# (skops' own warning). Trust them by name, only for artifacts from a source you trust.
SKOPS_DEFAULT_TRUSTED_TYPES = (
    "numpy.dtype",  # SimpleImputer, KBinsDiscretizer
    "sklearn.utils._bunch.Bunch",  # Voting*, Stacking*: named_estimators_
    "sklearn.calibration._CalibratedClassifier",  # CalibratedClassifierCV
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",  # MLP*
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.feature_selection._univariate_selection.f_classif",  # SelectKBest's default score
)
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    # ---- the server (every worker reads these through create_app) ----
    # Port the server binds on 0.0.0.0; Cloud Run injects PORT.
    port: int = 8080
    # What to serve, in order; the first entry's name is the default model.
    models: tuple[ModelSpec, ...] = ()
    # Where a copy of each gs:// artifact is kept for the next start on the same disk; unset: none
    # (a gs:// artifact is read into memory and loaded from there; on Cloud Run the disk is memory).
    model_cache_dir: str | None = None
    # Refuse (rather than warn about) a pickle made by another scikit-learn version.
    strict_sklearn_version: bool = False
    # The types a .skops artifact may hold beyond skops' own trusted ones; anything else refuses
    # the model at load. Only this setting decides, never the artifact (app/serving/formats.py).
    skops_trusted_types: tuple[str, ...] = SKOPS_DEFAULT_TRUSTED_TYPES
    # On: each model's outputs take the shortcuts verified at load, a tabular Pipeline's feature
    # steps the compiled path (app/serving/shortcuts/compute_path.py). Off: every model computes
    # with scikit-learn's own methods, to rule the shortcuts out when a prediction is in doubt.
    compiled_path: bool = True
    # Let pandas load pyarrow in the server process (off: ~34 MB less per instance; see
    # app/server/startup.py).
    server_pyarrow: bool = False
    # Bodies larger than this are refused with 413 before they are parsed.
    max_request_bytes: int = 10 * 1024 * 1024
    # Rows (instances, records, ids) one request may carry; more are refused with 413. A bigger
    # job is bulk scoring's (`mlapi batch-predict`).
    max_rows: int = 10_000
    # The longest one request may run, in seconds, on every server: past it the request pipeline
    # answers a JSON 504 (app/http/deadline.py); the server kills a worker still stuck 1 s later
    # (uWSGI's harakiri, gunicorn's --timeout).
    request_timeout_seconds: int = 60
    # "production" (the default on Cloud Run, where K_SERVICE is set) or "development": what an
    # anonymous caller may see (artifact paths, /metrics), per route: docs/security.md.
    environment: str = "development"
    # POST /pubsub/push checks the push's OIDC token (Authorization: Bearer): its audience and
    # the subscription's service account. Default on on Cloud Run (K_SERVICE set).
    push_auth: bool = False
    # The audience the token must carry (the subscription's --push-auth-token-audience; make deploy
    # and make create-push-subscription both use <project>/<region>/<service>/pubsub/push);
    # required when push_auth is on: never derived from the request's Host.
    push_audience: str | None = None
    # The service account the token must be issued to (the push subscription's
    # --push-auth-service-account); required when push_auth is on.
    push_service_account: str | None = None
    # Micro-batching: concurrent requests for one model version answered by one predict call
    # of at most this many rows (0 or 1: off). `mlapi serve` then runs threads per worker.
    max_batch_size: int = 0
    # The longest a request under load waits, from its arrival, for rows to join its batch
    # (never when idle).
    max_batch_wait_ms: float = 0.0
    # Entries kept by the in-process prediction cache (0 turns it off).
    prediction_cache_size: int = 10_000
    # How long a prediction cache entry lives, in process memory as in Redis (REDIS_URL).
    cache_ttl_seconds: int = 3600
    # Which routes consult the prediction cache (CACHE_ROUTE_KINDS): the single-input text
    # routes by default; for a cheap model a lookup costs about what the model does.
    cache_routes: frozenset = frozenset({"text"})
    # Python logging level name for the app's own log lines (and granian's).
    log_level: str = "INFO"
    # "json": one Cloud Logging object per line; "text": plain readable lines.
    log_format: str = "json"
    # Also log one line per request (with httpRequest; gunicorn's access log too); Cloud Run
    # already logs every request.
    access_log: bool = False
    # The Google Cloud project: trace links in logs, `mlapi publish`'s bare topic names.
    # GCP_PROJECT_ID (the name .env and the Makefile deploy with) wins over GOOGLE_CLOUD_PROJECT
    # (which Cloud Shell sets to whatever project is selected there); `make deploy` passes
    # GOOGLE_CLOUD_PROJECT to the service, since Cloud Run sets neither.
    google_cloud_project: str | None = None
    # When set, GET /metrics requires "Authorization: Bearer <token>"; in production, unset: no /metrics.
    metrics_token: str | None = field(default=None, repr=False)
    # GET /docs (Swagger UI, served from the package: no CDN) and GET /openapi.json; off: both 404.
    # Default on, but off in production (so on Cloud Run) unless API_DOCS says otherwise.
    api_docs: bool = True
    # When set, /docs and /openapi.json require it: "Authorization: Bearer <token>", or HTTP Basic
    # with it as the password (what a browser prompts for). API_DOCS_TOKEN_FILE names a file
    # holding it instead (a mounted secret, or one kept in secrets/).
    api_docs_token: str | None = field(default=None, repr=False)
    # When set, every route but health, readiness, /metrics, the API docs and the Pub/Sub push
    # needs one of these keys: "Authorization: Bearer <key>" or "X-API-Key: <key>", else a 401
    # (app/http/api_keys.py). API_KEYS (comma-separated) or API_KEYS_FILE (one key per line,
    # "#" comments), not both. Logged only as a key id (8 hex digits of the key's sha256).
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # When set, POST /admin/reload exists and requires "Authorization: Bearer <token>": it reloads
    # every model (app/server/reloads.py). Unset: the route is a 404. ADMIN_TOKEN or
    # ADMIN_TOKEN_FILE (a mounted secret), not both; a token like an API key (16+ characters).
    admin_token: str | None = field(default=None, repr=False)
    # How many proxies in front of the server each append the address they saw to
    # X-Forwarded-For (Cloud Run's front end: 1). The caller is the address the outermost trusted
    # one saw: entries a client wrote itself are never read. 0: the header is ignored.
    trusted_proxy_hops: int = 0
    # Requests per caller (the API key's id, else the client address), e.g. "100/minute;2000/hour"
    # (the limits library's notation); unset: no limit. Health, readiness, /metrics exempt.
    rate_limit: str | None = None
    # The Redis every process and instance shares (redis://, rediss://; Memorystore on Cloud Run):
    # the rate limits count there. Unset: each worker process counts on its own. May hold a password.
    redis_url: str | None = field(default=None, repr=False)
    # The longest one Redis call may take, in milliseconds, before the server does without Redis
    # (rate limits: each process counts on its own until Redis answers again).
    redis_timeout_ms: int = 100
    # The recent call log (GET /models/<name>/recent_call_log): how long a call is kept, in
    # seconds; how many calls per caller and model (0: no call log at all, the route is a 404);
    # how many characters of each input's JSON; in Redis, how long a busy worker keeps calls
    # to send them together (0: each at once).
    call_log_ttl: int = 3600
    call_log_size: int = 100
    call_log_input_chars: int = 2000
    call_log_batch_ms: int = 25
    # host:port of a Cloud Storage emulator: gs:// reads go there, anonymously.
    storage_emulator_host: str | None = None
    # ---- data: the feature store, ingestion, the predictions table ----
    # The online feature store that predict-by-id reads (read-only credentials suffice).
    feature_store_url: str = "sqlite:///data/features.db"
    # Where ingestion writes the store; defaults to feature_store_url.
    feature_store_write_url: str = "sqlite:///data/features.db"
    feature_table: str = "features"
    feature_id_column: str = "id"
    feature_text_column: str = "text"
    # The application's own database that `mlapi features add` writes; unset: records go
    # straight into the online store.
    source_db_url: str | None = None
    source_table: str = "records"
    # Where batch (Pub/Sub) predictions and poison-message failures are written.
    predictions_db_url: str = "sqlite:///data/predictions.db"
    # ---- `mlapi serve`: which server, how many workers and threads (app/server/launch.py) ----
    # uwsgi, gunicorn or granian; unset: granian when micro-batching is on, else uwsgi.
    server: str | None = None
    # Worker processes on every server (uWSGI's UWSGI_PROCESSES wins there); unset: one per CPU
    # the instance's cgroup quota grants (app/server/cpus.py), not the host's count.
    web_concurrency: int | None = None
    # Request threads per worker, one setting per server as each documents it; unset: 1, or
    # app/server/launch.py's BATCHING_THREADS with micro-batching. uWSGI reads UWSGI_THREADS
    # itself: it is parsed here too, so that a bad value stops `mlapi serve`, not uWSGI.
    uwsgi_threads: int | None = None
    gunicorn_threads: int | None = None
    granian_blocking_threads: int | None = None
    # The uWSGI config file; unset: ./uwsgi.ini, else the source checkout's (`mlapi serve --ini`
    # wins; app/server/launch.py find_ini).
    uwsgi_ini: str | None = None
    # Where workers write metric samples; unset: a fresh temporary directory. `mlapi serve`
    # empties it first, so a previous run's samples are not summed into this one's.
    prometheus_multiproc_dir: str | None = None
    # ---- `mlapi batch-predict` run as a Cloud Run Job, which sets these for each task ----
    # This task's shard and the number of shards (--shard-index / --shard-count win).
    task_index: int = 0
    task_count: int = 1
    # The job execution: --to-db's run id unless --run-id is given (retries reuse it).
    execution: str | None = None
    # ---- `mlapi publish` ----
    # A topic name (in google_cloud_project) or projects/P/topics/T; unset: post to ml_api_url.
    pubsub_topic: str | None = None
    # The server `mlapi publish` posts a push envelope to when no topic is set.
    ml_api_url: str = "http://localhost:8080"

    @property
    def default_model(self) -> str | None:
        return self.models[0].name if self.models else None

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def batching(self) -> bool:
        """Micro-batching is on: a predict call may merge more than one request's rows."""
        return self.max_batch_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Parse and check every setting; a bad one raises ConfigurationError naming it."""
        env = dict(os.environ if env is None else env)
        feature_store_url = _text(env, "FEATURE_STORE_URL") or "sqlite:///data/features.db"
        return cls(  # MODELS first: of what can be wrong, the likeliest, so the one reported
            models=_models(env),
            port=_int(env, "PORT", 8080, minimum=1),
            model_cache_dir=_text(env, "MODEL_CACHE_DIR"),
            strict_sklearn_version=_bool(env, "STRICT_SKLEARN_VERSION", False),
            skops_trusted_types=_type_names(env, "SKOPS_TRUSTED_TYPES", SKOPS_DEFAULT_TRUSTED_TYPES),
            server_pyarrow=_bool(env, "SERVER_PYARROW", False),
            compiled_path=_bool(env, "COMPILED_PATH", True),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1),
            max_rows=_int(env, "MAX_ROWS", 10_000, minimum=1),
            request_timeout_seconds=_int(env, "REQUEST_TIMEOUT", 60, minimum=1),
            environment=(environment := _choice(env, "ENVIRONMENT", "production" if _text(env, "K_SERVICE")
                                                else "development", ("development", "production"))),
            push_auth=_bool(env, "PUSH_AUTH", bool(_text(env, "K_SERVICE"))),
            push_audience=_text(env, "PUSH_AUDIENCE"),
            push_service_account=_text(env, "PUSH_SERVICE_ACCOUNT"),
            prediction_cache_size=_int(env, "PREDICTION_CACHE_SIZE", 10_000, minimum=0),
            cache_ttl_seconds=_int(env, "CACHE_TTL_SECONDS", 3600, minimum=1),
            cache_routes=_cache_routes(env),
            max_batch_size=_int(env, "MAX_BATCH_SIZE", 0, minimum=0),
            max_batch_wait_ms=_float(env, "MAX_BATCH_WAIT_MS", 0.0),
            log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper(),
            log_format=_choice(env, "LOG_FORMAT", "json", ("json", "text")),
            access_log=_bool(env, "ACCESS_LOG", False),
            google_cloud_project=_text(env, "GCP_PROJECT_ID") or _text(env, "GOOGLE_CLOUD_PROJECT"),
            metrics_token=_text(env, "METRICS_TOKEN"),
            # Off by default in production (the default on Cloud Run, which sets K_SERVICE): a
            # service publishes its feature names and categories only when asked; on locally.
            api_docs=_bool(env, "API_DOCS", environment != "production"),
            api_docs_token=_text(env, "API_DOCS_TOKEN") or secret_file(env, "API_DOCS_TOKEN_FILE"),
            api_keys=api_keys(env),
            admin_token=admin_token(env),
            trusted_proxy_hops=_int(env, "TRUSTED_PROXY_HOPS", 0, minimum=0),
            rate_limit=_rate_limit(env),
            redis_url=_redis_url(env),
            redis_timeout_ms=_int(env, "REDIS_TIMEOUT_MS", 100, minimum=1),
            call_log_ttl=_int(env, "CALL_LOG_TTL", 3600, minimum=1),
            call_log_size=_int(env, "CALL_LOG_SIZE", 100, minimum=0),
            call_log_input_chars=_int(env, "CALL_LOG_INPUT_CHARS", 2000, minimum=1),
            call_log_batch_ms=_at_most(_int(env, "CALL_LOG_BATCH_MS", 25, minimum=0), "CALL_LOG_BATCH_MS", 1000),
            storage_emulator_host=_text(env, "STORAGE_EMULATOR_HOST"),
            feature_store_url=feature_store_url,
            feature_store_write_url=_text(env, "FEATURE_STORE_WRITE_URL") or feature_store_url,
            feature_table=_identifier(env, "FEATURE_TABLE", "features"),
            feature_id_column=_identifier(env, "FEATURE_ID_COLUMN", "id"),
            feature_text_column=_identifier(env, "FEATURE_TEXT_COLUMN", "text"),
            source_db_url=_text(env, "SOURCE_DB_URL"),
            source_table=_identifier(env, "SOURCE_TABLE", "records"),
            predictions_db_url=_text(env, "PREDICTIONS_DB_URL") or "sqlite:///data/predictions.db",
            server=_choice(env, "SERVER", None, ("uwsgi", "gunicorn", "granian")),
            web_concurrency=_int(env, "WEB_CONCURRENCY", None, minimum=1),
            uwsgi_threads=_int(env, "UWSGI_THREADS", None, minimum=1),
            gunicorn_threads=_int(env, "GUNICORN_THREADS", None, minimum=1),
            granian_blocking_threads=_int(env, "GRANIAN_BLOCKING_THREADS", None, minimum=1),
            uwsgi_ini=_text(env, "UWSGI_INI"),
            prometheus_multiproc_dir=_text(env, "PROMETHEUS_MULTIPROC_DIR"),
            task_index=_int(env, "CLOUD_RUN_TASK_INDEX", 0, minimum=0),
            task_count=_int(env, "CLOUD_RUN_TASK_COUNT", 1, minimum=1),
            execution=_text(env, "CLOUD_RUN_EXECUTION"),
            pubsub_topic=_text(env, "PUBSUB_TOPIC"),
            ml_api_url=(_text(env, "ML_API_URL") or "http://localhost:8080").rstrip("/"),
        )


def _models(env: Mapping[str, str]) -> tuple[ModelSpec, ...]:
    """MODELS when set; else the one model of MODEL_URI / MODEL_NAME / MODEL_SHA256."""
    models_value = env.get("MODELS", "").strip()
    if models_value:
        return parse_models(models_value)
    uri, sha = split_digest(_text(env, "MODEL_URI") or "models/latest.joblib", "MODEL_URI")
    sha = sha or (_text(env, "MODEL_SHA256") or "").lower() or None
    if sha is not None and not SHA256_HEX.match(sha):
        raise ConfigurationError(f"MODEL_SHA256={sha!r} must be 64 hex digits (a sha256)")
    return (ModelSpec(_text(env, "MODEL_NAME") or "latest", "1", uri, sha),)


# ---- one parser per type: each error names the variable and what it expects -----------------
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _rate_limit(env: Mapping[str, str]) -> str | None:
    raw = _text(env, "RATE_LIMIT")
    if raw is None:
        return None
    from limits import parse_many  # only when set: the CLI commands never pay for it

    try:
        if all(limit.amount > 0 for limit in parse_many(raw)):
            return raw
    except ValueError:
        pass
    raise ConfigurationError(f"RATE_LIMIT={raw!r} is not a rate limit: write amount/period pairs separated "
                             f"by ';', e.g. 100/minute;2000/hour (periods: second, minute, hour, day)")


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = _text(env, "REDIS_URL")
    if url is not None and not url.startswith(("redis://", "rediss://", "redis+unix://")):
        # The URL may hold a password: name the scheme only.
        raise ConfigurationError(f"REDIS_URL must start with redis://, rediss:// or redis+unix://, "
                                 f"not {url.partition(':')[0]!r}")
    return url


_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _type_names(env: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated dotted type names (`module.Type`, as skops names them); the word `default`
    stands for `default`'s names, so `default,my_pkg.MyScaler` extends them. Unset: `default`."""
    names: list[str] = []
    for name in (_text(env, key) or "default").split(","):
        name = name.strip()
        if not name:
            continue
        if name == "default":
            names += default
        elif _TYPE_NAME.match(name):
            names.append(name)
        else:
            raise ConfigurationError(f"{key}: {name!r} is not a dotted type name (module.Type, as skops "
                                     f"names it) nor the word default")
    return tuple(dict.fromkeys(names))


def _identifier(env: Mapping[str, str], key: str, default: str) -> str:
    # Table and column names end up in SQL: accept plain identifiers only.
    value = _text(env, key) or default
    if not _IDENTIFIER.match(value):
        raise ConfigurationError(f"{key}={value!r} must be a plain SQL identifier (letters, digits, _)")
    return value


def _choice(env: Mapping[str, str], key: str, default: str | None, choices: tuple[str, ...]) -> str | None:
    raw = _text(env, key)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise ConfigurationError(f"{key}={raw!r} is not one of {', '.join(choices)}")
    return raw.lower()


# What CACHE_ROUTES names: the three single-input routes; native predict (/predict, a model's
# and a version's); predict_features; predict by id (GET .../predict/<id>).
CACHE_ROUTE_KINDS = ("text", "predict", "predict_features", "by_id")


def _cache_routes(env: Mapping[str, str]) -> frozenset:
    """CACHE_ROUTES: kinds separated by commas, or `all`, or `none`."""
    raw = _text(env, "CACHE_ROUTES")
    if raw is None:
        return Settings.cache_routes
    names = {name.strip().lower() for name in raw.split(",")} - {""}
    if names == {"all"}:
        return frozenset(CACHE_ROUTE_KINDS)
    if names == {"none"}:
        return frozenset()
    unknown = sorted(names - set(CACHE_ROUTE_KINDS))
    if unknown or not names:
        raise ConfigurationError(f"CACHE_ROUTES={raw!r} names {', '.join(unknown) or 'nothing'}: list some of "
                                 f"{', '.join(CACHE_ROUTE_KINDS)} separated by commas, or all, or none")
    return frozenset(names)


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = _text(env, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a number (expected 0 to 1000)") from None
    if not 0 <= value <= 1000:
        raise ConfigurationError(f"{key}={raw!r} must be between 0 and 1000")
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
    raise ConfigurationError(f"{key}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _at_most(value: int, key: str, maximum: int) -> int:
    if value > maximum:
        raise ConfigurationError(f"{key}={value} must be at most {maximum}")
    return value


def _int(env: Mapping[str, str], key: str, default: int | None, minimum: int) -> int | None:
    raw = _text(env, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not an integer (expected {minimum} or more)") from None
    if value < minimum:
        raise ConfigurationError(f"{key}={raw!r} must be at least {minimum}")
    return value
