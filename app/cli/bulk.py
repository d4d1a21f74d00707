"""`mlapi batch-predict`: score a file or the whole feature store in chunks (mlapi.batch.bulk),
as one process or as the parallel tasks of a Cloud Run Job."""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from mlapi.cli.progress import progress_bar
from mlapi.config import Settings
from mlapi.errors import ConfigurationError, InvalidInput, MlapiError, ModelNotFound

EPILOG = """\
sharding: the input is cut into chunks of --chunk-size rows, numbered from 0; shard I of N
scores chunk k when k % N == I. --shard-index / --shard-count default to Cloud Run Jobs'
CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT (else 0 / 1), so the same command run as an
N-task job covers every row exactly once. With N > 1, put {shard} in --output (one file
per task). --to-db stores chunk k as message batch:<run id>:<shard>:<k>: a retried task
(same run id, same N) writes nothing twice.
"""


def register(commands) -> None:
    cmd = commands.add_parser(
        "batch-predict", help="score a CSV/Parquet/JSON-lines file or the whole feature store, in chunks",
        description="Bulk scoring with the models of MODELS / MODEL_URI, in bounded memory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("--model", metavar="NAME[:VERSION]", help="a model from MODELS (default: the default model)")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, metavar="FILE",
                        help="CSV, Parquet or JSON lines (by extension): the features by name (tabular "
                             "models; each read as the type the model was fitted on) or the "
                             "FEATURE_TEXT_COLUMN (text models), and an id column if it has one (without "
                             "one, --output keys rows by their number from 0, in a `row` column; --to-db "
                             "refuses it)")
    source.add_argument("--from-store", action="store_true", help="every record of the online feature store")
    target = cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", metavar="FILE",
                        help="CSV, Parquet or JSON lines: the id (or `row`), `prediction`, and `proba_<class>` "
                             "per class, in input order; {shard} is replaced by the shard index")
    target.add_argument("--to-db", action="store_true", help="the predictions table (PREDICTIONS_DB_URL)")
    cmd.add_argument("--chunk-size", type=_positive, default=10_000, metavar="N",
                     help="rows scored at a time; memory grows with it, not with the input (default 10000)")
    cmd.add_argument("--shard-index", type=_count, metavar="I", help="default $CLOUD_RUN_TASK_INDEX, else 0")
    cmd.add_argument("--shard-count", type=_positive, metavar="N", help="default $CLOUD_RUN_TASK_COUNT, else 1")
    cmd.add_argument("--workers", type=_positive, default=_cpus(), metavar="N",
                     help="chunks scored at once, each on its own thread (default: the CPUs available, "
                          f"{_cpus()} here)")
    cmd.add_argument("--id-column", metavar="NAME",
                     help="the input's id column, which it must then have (default FEATURE_ID_COLUMN, i.e. id, "
                          "if the input has it)")
    cmd.add_argument("--run-id", metavar="ID",
                     help="names this run's messages with --to-db (default $CLOUD_RUN_EXECUTION, else a new id, "
                          "printed); reuse it to retry a run")
    cmd.set_defaults(handler=cmd_batch_predict)


def cmd_batch_predict(args, settings: Settings) -> int:
    try:
        return _run(args, settings)
    except ConfigurationError:
        raise  # main() reports it like every command's
    except MlapiError as exc:
        # Bad input, an unknown model, a database that is down: one line, not a traceback.
        print(f"mlapi batch-predict: {exc.message}", file=sys.stderr)
        return 2 if exc.status_code < 500 else 1


def _run(args, settings: Settings) -> int:
    from mlapi.batch import bulk

    shard = bulk.Shard(settings.task_index if args.shard_index is None else args.shard_index,
                       settings.task_count if args.shard_count is None else args.shard_count)
    id_column = args.id_column or settings.feature_id_column
    if args.input is not None and not args.input.is_file():
        raise InvalidInput(f"no such input file: {args.input}")
    if args.input is not None and args.to_db:
        bulk.require_id_column(args.input, id_column)  # before loading a model or scoring a row
    output = _output_path(args.output, shard) if args.output else None
    if output is not None:
        bulk.file_format(output)  # refuse an unknown extension before any work
    services, model = load_services(settings, args.model)
    run_id = (args.run_id or settings.execution or _new_run_id()) if args.to_db else None
    started = time.perf_counter()
    with progress_bar(f"{model.name}:{model.version} shard {shard.index}/{shard.count}") as bar, \
            _sink(services, model, output, id_column, run_id, shard) as sink:
        if args.from_store:
            from mlapi.serving.inference import ModelRef

            bulk.score_store(services.inference, ModelRef(model.name, model.version), services.feature_store, sink,
                             args.chunk_size, shard, args.workers, bar.update)
        else:
            bulk.score_file(model, args.input, sink, args.chunk_size, shard, id_column,
                            settings.feature_text_column, args.workers, bar.update,
                            id_required=args.id_column is not None or args.to_db)
    seconds = time.perf_counter() - started
    where = output if output is not None else f"the predictions table ({sink.stored} new rows, run id {run_id})"
    print(f"scored {sink.rows} rows with {model.name}:{model.version} (shard {shard.index}/{shard.count}) "
          f"in {seconds:.2f}s after start-up → {where}")
    if sink.failed:
        # Store records the model cannot use (missing features, ...): the others are scored.
        shown = "\n".join(f"  {entity_id}: {reason}" for entity_id, reason in sink.failure_examples.items())
        print(f"{sink.failed} record(s) not scored"
              + (" (also in the prediction_failures table)" if args.to_db else "") + f":\n{shown}", file=sys.stderr)
    return 0


def load_services(settings: Settings, wanted: str | None):
    """(services, model): the server's services (mlapi.services.build_services) holding only the
    wanted model's versions: loading every model of MODELS to score with one would cost start-up
    time and memory for nothing."""
    from mlapi.naming import split_model_ref
    from mlapi.services import build_services

    name, version = split_model_ref(wanted)
    name = name or settings.default_model
    specs = [spec for spec in settings.models if spec.name == name]
    if not specs:
        raise ModelNotFound(f"unknown model {name!r}; MODELS lists {sorted({s.name for s in settings.models})}")
    services = build_services(settings, models=specs)
    return services, services.registry.get(name, version)


def _sink(services, model, output: Path | None, id_column: str, run_id: str, shard):
    from mlapi.batch import bulk

    if output is not None:
        return bulk.FileSink(output, model, id_column)
    return bulk.PredictionsSink(services.predictions, model, run_id, shard)


def _output_path(template: str, shard) -> Path:
    if shard.count > 1 and "{shard}" not in template:
        raise InvalidInput(f"{shard.count} shards would all write {template}: put {{shard}} in --output, "
                           f"e.g. predictions-{{shard}}.parquet")
    return Path(template.replace("{shard}", str(shard.index)))


def _new_run_id() -> str:
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    print(f"run id {run_id} (pass --run-id {run_id} to retry this run without duplicates)", file=sys.stderr)
    return run_id


def _cpus() -> int:
    # The CPUs this process may run on (a container's or a task's), not the host's.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
