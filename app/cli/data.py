"""`mlapi features ...` and `mlapi publish`: the data-side commands (writing the online
feature store, sending batch requests)."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import orjson

from mlapi.cli.progress import progress_bar
from mlapi.config import Settings
from mlapi.errors import InvalidInput


def register(commands) -> None:
    features = commands.add_parser("features", help="write the online feature store")
    sub = features.add_subparsers(dest="features_command", required=True)

    add = sub.add_parser("add", help="store one record and print its id")
    add.add_argument("text", nargs="?", help="the record's text (a text record)")
    add.add_argument("--json", dest="json_record", help='a tabular record, e.g. \'{"id": "7", "age": 41}\'')
    add.set_defaults(handler=cmd_features_add)

    imp = sub.add_parser("import", help="import a CSV/Parquet/JSON-lines file; without FILE, sync SOURCE_DB_URL")
    imp.add_argument("file", nargs="?", type=Path)
    imp.add_argument("--skip-bad-rows", action="store_true",
                     help="write the good rows and report the bad ones (default: refuse the whole file)")
    imp.set_defaults(handler=cmd_features_import)

    syn = sub.add_parser("sync", help="materialize rows of an operational database into the store")
    syn.add_argument("--from", dest="source_url", required=True, help="SQLAlchemy URL of the source database")
    syn.add_argument("--query", required=True, help="SELECT returning the id column and the features")
    syn.add_argument("--updated-at", default="updated_at",
                     help="column for incremental syncs (default updated_at; ignored when absent)")
    syn.set_defaults(handler=cmd_features_sync)

    pub = commands.add_parser("publish",
                              help="publish a batch request (to PUBSUB_TOPIC, else to ML_API_URL's /pubsub/push)")
    pub.add_argument("data", help='JSON, e.g. \'{"id": "1"}\' or \'{"ids": ["1", "2"], "model": "tickets"}\'')
    pub.set_defaults(handler=cmd_publish)


def _write_engine(settings: Settings):
    from mlapi.store.database import make_engine

    return make_engine(settings.feature_store_write_url)


def cmd_features_add(args, settings: Settings) -> int:
    from mlapi.store.database import make_engine
    from mlapi.store.ingest import add_record

    if (args.text is None) == (args.json_record is None):
        raise SystemExit("mlapi features add: give a TEXT or --json RECORD")
    if args.json_record is not None:
        record = orjson.loads(args.json_record)
        if not isinstance(record, dict):
            raise SystemExit("mlapi features add: --json must be a JSON object")
    else:
        record = {settings.feature_text_column: args.text}
    try:
        if settings.source_db_url:
            # The application's own database; `features import` moves it to the store.
            new_id = add_record(make_engine(settings.source_db_url), settings.source_table,
                                settings.feature_id_column, record, autoincrement=True)
        else:
            new_id = add_record(_write_engine(settings), settings.feature_table, settings.feature_id_column,
                                record, autoincrement=False)
    except ValueError as exc:  # the record does not fit the existing table
        raise SystemExit(f"mlapi features add: {exc}")
    print(new_id)
    return 0


def cmd_features_import(args, settings: Settings) -> int:
    from mlapi.store.ingest import ImportRefused, import_rows, read_rows

    if args.file is None:
        if not settings.source_db_url:
            print("nothing to import: SOURCE_DB_URL is unset, so `mlapi features add` already writes "
                  "straight into the online store. Give a FILE to import one.")
            return 0
        return _sync(settings, settings.source_db_url, f"SELECT * FROM {settings.source_table}", "updated_at")
    if not args.file.is_file():
        raise SystemExit(f"mlapi features import: no such file {args.file}")
    with progress_bar(f"importing {args.file.name}") as progress:
        try:
            report = import_rows(_write_engine(settings), settings.feature_table, settings.feature_id_column,
                                 read_rows(args.file), skip_bad_rows=args.skip_bad_rows, progress=progress)
        except (ImportRefused, InvalidInput) as refused:  # bad rows; the data as a whole does not fit (no id)
            print(f"import refused, nothing written: {refused}", file=sys.stderr)
            return 2
    print(f"imported {report.written} rows into {settings.feature_table}"
          + (" (table created)" if report.created_table else "")
          + (f" (columns added: {', '.join(report.added_columns)})" if report.added_columns else ""))
    if report.bad_rows:
        print(f"skipped {len(report.bad_rows)} bad rows:\n{report.describe_bad()}", file=sys.stderr)
    return 0


def cmd_features_sync(args, settings: Settings) -> int:
    return _sync(settings, args.source_url, args.query, args.updated_at)


def _sync(settings: Settings, source_url: str, query: str, updated_at: str | None) -> int:
    from mlapi.store.ingest import sync

    with progress_bar("syncing") as progress:
        try:
            written, incremental = sync(source_url, query, _write_engine(settings), settings.feature_table,
                                        settings.feature_id_column, updated_at, progress)
        except InvalidInput as refused:  # the rows do not fit the store (no id column)
            print(f"sync refused, nothing written: {refused}", file=sys.stderr)
            return 2
    print(f"synced {written} rows into {settings.feature_table}" + (" (incremental)" if incremental else ""))
    return 0


def cmd_publish(args, settings: Settings) -> int:
    try:
        data = orjson.loads(args.data)
    except orjson.JSONDecodeError as exc:
        raise SystemExit(f"mlapi publish: not JSON: {exc}")
    if settings.pubsub_topic:
        print(publish_to_topic(topic_path(settings.pubsub_topic, settings.google_cloud_project), data))
        return 0
    url = settings.ml_api_url + "/pubsub/push"
    status, body = post_envelope(url, data)
    print(body)
    return 0 if 200 <= status < 300 else 1


def topic_path(topic: str, project: str | None) -> str:
    if topic.startswith("projects/"):
        return topic
    if not project:
        raise SystemExit("mlapi publish: PUBSUB_TOPIC is a bare name; set GCP_PROJECT_ID (or GOOGLE_CLOUD_PROJECT) "
                         "or give projects/P/topics/T")
    return f"projects/{project}/topics/{topic}"


def publish_to_topic(topic: str, data) -> str:
    """Publish to `topic` (projects/P/topics/T) with google-cloud-pubsub, which honours
    PUBSUB_EMULATOR_HOST itself; returns the message id."""
    try:
        from google.cloud import pubsub_v1
    except ImportError:
        raise SystemExit("mlapi publish: PUBSUB_TOPIC needs google-cloud-pubsub: pip install 'mlapi[pubsub]'")
    publisher = pubsub_v1.PublisherClient()
    return publisher.publish(topic, orjson.dumps(data)).result(timeout=60)


def post_envelope(url: str, data) -> tuple[int, str]:
    """Without a topic: deliver the push envelope Pub/Sub would send, so the flow runs locally."""
    # urllib.request is imported here, not at the top: every `mlapi serve` (every container
    # start) imports this module to build its --help, and would pay ~20 ms for it.
    import urllib.error
    import urllib.request

    from mlapi.protocols.pubsub import encode_envelope

    body = orjson.dumps(encode_envelope(data, f"local-{uuid.uuid4().hex}"))
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        raise SystemExit(f"mlapi publish: cannot reach {url}: {exc.reason}")
