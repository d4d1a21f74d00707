"""Bulk scoring: a file, or every record of the feature store, → predictions, chunk by chunk.

Memory is bounded by the chunk size, never by the input: a file is read as a stream of Arrow
batches and cut into chunks of exactly `chunk_size` rows; a chunk is scored and written while
only a few others are in flight. One thread reads and parses (pyarrow releases the GIL), a
pool of `workers` threads scores (scikit-learn's trees and BLAS release it too), and the
caller's thread writes, in input order.

Chunk k is rows [k * chunk_size, (k + 1) * chunk_size) of the input (of the store's ids, in id
order, for --from-store). Shard i of n scores chunk k when k % n == i: n tasks running the same
command cover every row exactly once, and a chunk's number does not change on a retry, which is
what makes its predictions-table message id `batch:<run>:<shard>:<chunk>` idempotent.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import queue
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mlapi.errors import InvalidInput
from mlapi.serving.model import TEXT, PredictionResult, ServedModel
from mlapi.protocols.entity import ranked_prediction

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def file_format(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .parquet or .jsonl")
    return FORMATS[suffix]


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidInput(f"shard index {self.index} is not in 0..{self.count - 1} (shard count {self.count})")

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index


# ---- which columns feed the model ----------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    id_column: str
    columns: tuple[str, ...]  # the model's input columns, in the order it takes them
    text: bool                # one text column rather than numeric features


def read_header(path: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        return pq.ParquetFile(path).schema_arrow.names
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                return list(_json_row(line, number))
    return []


def layout_for(model: ServedModel, header: list[str], id_column: str, text_column: str) -> Layout:
    if not header:
        raise InvalidInput("the input is empty: no header, no rows")
    if id_column not in header:
        raise InvalidInput(f"the input has no {id_column!r} column (name it with --id-column); it has {header}")
    if model.input_kind == TEXT:
        if text_column not in header:
            raise InvalidInput(f"the input has no {text_column!r} column, which text model {model.name} reads "
                               f"(FEATURE_TEXT_COLUMN)")
        return Layout(id_column, (text_column,), True)
    names = model.feature_names
    if names is None:
        # Fitted on a bare array: the features are the other columns, in file order.
        names = [c for c in header if c != id_column]
        if model.n_features is not None and len(names) != model.n_features:
            raise InvalidInput(f"model {model.name} was fitted without feature names and expects {model.n_features} "
                               f"feature columns; the input has {len(names)} besides {id_column!r}: {names}")
    missing = [name for name in names if name not in header]
    if missing:
        raise InvalidInput(f"the input lacks feature column(s) {missing} that model {model.name} needs")
    return Layout(id_column, tuple(names), False)


# ---- reading: a file → Arrow tables of exactly chunk_size rows -------------------------------
def read_chunks(path: Path, fmt: str, layout: Layout, chunk_size: int) -> Iterator[pa.Table]:
    names = [layout.id_column, *layout.columns]
    if fmt == "csv":
        batches = _csv_batches(path, layout, chunk_size)
    elif fmt == "parquet":
        batches = (_conform(b, layout) for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=names))
    else:
        batches = _jsonl_batches(path, layout, chunk_size)
    return _rechunk(batches, chunk_size)


def _csv_batches(path: Path, layout: Layout, chunk_size: int) -> Iterator[pa.RecordBatch]:
    kind = pa.string() if layout.text else pa.float64()
    options = dict(
        # Parse on the reader's thread alone: the scorers need the other cores, and pyarrow's
        # own pool measured no faster here.
        read_options=pcsv.ReadOptions(block_size=_block_size(path, chunk_size), use_threads=False),
        # Texts may hold quoted line breaks; numbers cannot, and blocks split faster without the check.
        parse_options=pcsv.ParseOptions(newlines_in_values=layout.text),
        # Converting straight to float64 is what makes the model input a plain copy, not a per-row loop.
        convert_options=pcsv.ConvertOptions(
            column_types={layout.id_column: pa.string(), **{c: kind for c in layout.columns}},
            include_columns=[layout.id_column, *layout.columns]))
    try:
        yield from pcsv.open_csv(path, **options)
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, read_header(path, "csv")) from None


def _block_size(path: Path, chunk_size: int) -> int:
    # About one chunk of text per block, within 1-8 MiB: bigger blocks parse no faster, and
    # every block in flight is memory.
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    per_row = len(sample) / max(1, sample.count(b"\n"))
    return int(min(max(per_row * chunk_size, 1 << 20), 8 << 20))


_CSV_COLUMN = re.compile(r"In CSV column #(\d+): .*?(invalid value '.*')?$", re.S)


def _csv_error(exc: Exception, header: list[str]) -> InvalidInput:
    match = _CSV_COLUMN.match(str(exc))
    if match and int(match.group(1)) < len(header):
        name = header[int(match.group(1))]
        return InvalidInput(f"column {name!r} must hold numbers: {match.group(2) or exc}", column=name)
    return InvalidInput(f"the CSV cannot be read: {exc}")


def _jsonl_batches(path: Path, layout: Layout, chunk_size: int) -> Iterator[pa.Table]:
    rows: list[dict] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_json_row(line, number))
            if len(rows) == chunk_size:
                yield _json_table(rows, layout)
                rows = []
    if rows:
        yield _json_table(rows, layout)


def _json_row(line: bytes, number: int) -> dict:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"line {number} is not JSON: {exc}") from None
    if not isinstance(row, dict):
        raise InvalidInput(f"line {number} is not a JSON object")
    return row


def _json_table(rows: list[dict], layout: Layout) -> pa.Table:
    ids = [None if row.get(layout.id_column) is None else str(row[layout.id_column]) for row in rows]
    columns = {layout.id_column: pa.array(ids, pa.string())}
    for name in layout.columns:
        try:
            columns[name] = pa.array([row.get(name) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"column {name!r} mixes kinds of values: {exc}", column=name) from None
    return _conform(pa.table(columns), layout)


def _conform(batch, layout: Layout) -> pa.Table:
    """Parquet and JSON columns as CSV reads them: the id as a string, features as float64."""
    kind = pa.string() if layout.text else pa.float64()
    arrays = [_cast(batch.column(layout.id_column), pa.string(), layout.id_column)]
    arrays += [_cast(batch.column(name), kind, name) for name in layout.columns]
    return pa.table(arrays, names=[layout.id_column, *layout.columns])


def _cast(array, kind: pa.DataType, name: str):
    if array.type == kind:
        return array
    try:
        return pc.cast(array, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        what = "text" if kind == pa.string() else "numbers"
        raise InvalidInput(f"column {name!r} must hold {what}: {exc}", column=name) from None


def _rechunk(batches: Iterable, size: int) -> Iterator[pa.Table]:
    # Blocks are cut by bytes, chunks by rows: slicing is zero-copy, so this costs nothing.
    pending: list[pa.Table] = []
    rows = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
            rows += batch.num_rows
        while rows >= size:
            table = pa.concat_tables(pending)
            yield table.slice(0, size)
            pending, rows = [table.slice(size)], rows - size
    if rows:
        yield pa.concat_tables(pending)


# ---- scoring ----------------------------------------------------------------------------------
@dataclass
class Scored:
    index: int                      # the chunk's number in the whole input
    ids: list | pa.ChunkedArray
    labels: np.ndarray
    proba: np.ndarray | None
    data: list | None = None        # per row, what a stored text prediction shows (its text)
    failures: dict[str, str] = field(default_factory=dict)  # store ids that could not be scored


@dataclass
class Chunk:
    """A chunk ready for the model: built on the reader's thread, to keep the scorers' short."""

    index: int
    rows: str                       # "rows 20001-30000", for error messages
    ids: pa.ChunkedArray
    model_input: Any
    columns: tuple[str, ...]


def to_chunk(model: ServedModel, layout: Layout, index: int, table: pa.Table, first_row: int) -> Chunk:
    ids = table.column(layout.id_column)
    rows = f"rows {first_row + 1}-{first_row + table.num_rows}"
    if ids.null_count:
        raise InvalidInput(f"{rows}: {ids.null_count} row(s) have no {layout.id_column!r}")
    if layout.text:
        texts = table.column(layout.columns[0])
        if texts.null_count:
            raise InvalidInput(f"{rows}: {texts.null_count} row(s) have no text in {layout.columns[0]!r}")
        return Chunk(index, rows, ids, texts.to_pylist(), layout.columns)
    # float64 columns → one row-major matrix: a copy per column, no per-row Python.
    matrix = np.column_stack([table.column(name).to_numpy() for name in layout.columns])
    if model.feature_names is not None:
        matrix = pd.DataFrame(matrix, columns=list(layout.columns), copy=False)
    return Chunk(index, rows, ids, matrix, layout.columns)


def score_chunk(model: ServedModel, chunk: Chunk) -> Scored:
    try:
        labels, proba = predict_arrays(model, chunk.model_input)
    except InvalidInput as exc:
        raise InvalidInput(f"{chunk.rows}{_empty_hint(chunk)}: {exc.message}") from exc
    texts = chunk.model_input if isinstance(chunk.model_input, list) else None
    return Scored(chunk.index, chunk.ids, labels, proba, texts)


def _empty_hint(chunk: Chunk) -> str:
    if isinstance(chunk.model_input, list):
        return ""
    empty = [name for name, bad in zip(chunk.columns, np.isnan(np.asarray(chunk.model_input)).any(axis=0)) if bad]
    return f" have empty values in {empty}" if empty else ""


def predict_arrays(model: ServedModel, model_input) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and class probabilities when the model has them) as numpy arrays: what
    ServedModel.predict computes, without its per-row conversion to Python lists."""
    return model.predict_arrays(model.features(model_input))


def records_to_scored(index: int, records) -> Scored:
    """InferenceService.predict_ids' RecordPredictions (--from-store) as a Scored chunk."""
    result = records.result
    labels = np.asarray(result.predictions if result else [])
    proba = None if result is None or result.probabilities is None else np.asarray(result.probabilities, dtype=float)
    return Scored(index, records.ids, labels, proba, records.data, records.failures)


# ---- writing ----------------------------------------------------------------------------------
def output_table(model: ServedModel, id_column: str, scored: Scored) -> pa.Table:
    columns: dict[str, Any] = {id_column: pa.chunked_array([pa.array(scored.ids, pa.string())])
                               if isinstance(scored.ids, list) else scored.ids,
                               "prediction": pa.array(scored.labels)}
    if model.has_proba:
        probabilities = scored.proba if scored.proba is not None else np.empty((0, len(model.classes)))
        for i, label in enumerate(model.classes):
            columns[f"proba_{label}"] = np.ascontiguousarray(probabilities[:, i])
    return pa.table(columns)


class _Sink:
    """Counts what was written; keeps a few failures (ids the store could not score) to show."""

    def __init__(self) -> None:
        self.rows = self.failed = 0
        self.failure_examples: dict[str, str] = {}

    def note_failures(self, failures: dict[str, str]) -> None:
        self.failure_examples.update(list(failures.items())[:20 - len(self.failure_examples)])
        self.failed += len(failures)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        pass


class FileSink(_Sink):
    """Scored chunks → a CSV, Parquet or JSON-lines file, atomically: rows go to `<path>.partial`,
    renamed to `path` only once every chunk is written, so a failed or retried task never
    leaves a file that looks complete."""

    def __init__(self, path: Path, model: ServedModel, id_column: str):
        super().__init__()
        self.path, self.model, self.id_column = Path(path), model, id_column
        self.format = file_format(self.path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._writer = None

    def write(self, scored: Scored) -> None:
        self.note_failures(scored.failures)
        table = output_table(self.model, self.id_column, scored)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.schema = table.schema
            self._writer = self._open(table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        if self.format == "jsonl":
            lines = (orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in table.to_pylist())
            self._writer.write(b"".join(lines))
        else:
            self._writer.write_table(table)
        self.rows += table.num_rows

    def _open(self, schema: pa.Schema):
        if self.format == "csv":
            return pcsv.CSVWriter(str(self.partial), schema)
        if self.format == "parquet":
            return pq.ParquetWriter(str(self.partial), schema)
        return open(self.partial, "wb")

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None and self._writer is None:  # nothing scored: still leave a (header-only) file
            empty = np.asarray(self.model.classes or np.empty(0))[:0]
            self.write(Scored(0, [], empty, None))
        if self._writer is not None:
            self._writer.close()
        if exc is None:
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)


class PredictionsSink(_Sink):
    """Scored chunks → the predictions table, one message per chunk, `batch:<run>:<shard>:<chunk>`:
    unique on (message_id, entity_id), so a retried task with the same run id writes nothing twice."""

    def __init__(self, store, model: ServedModel, run_id: str, shard: Shard):
        super().__init__()
        self.store, self.model, self.run_id, self.shard = store, model, run_id, shard
        self.stored = 0

    def write(self, scored: Scored) -> None:
        message_id = f"batch:{self.run_id}:{self.shard.index}:{scored.index}"
        ids = scored.ids if isinstance(scored.ids, list) else scored.ids.to_pylist()
        result = PredictionResult(scored.labels.tolist(), None if scored.proba is None else scored.proba.tolist(),
                                  self.model.classes)
        rows = [(entity_id, ranked_prediction(self.model, result, i, scored.data[i] if scored.data else None))
                for i, entity_id in enumerate(ids)]
        self.stored += self.store.record_predictions(message_id, self.model.name, self.model.version, rows)
        if scored.failures:
            self.note_failures(scored.failures)
            self.store.record_failures(message_id, list(scored.failures.items()), None)
        self.rows += len(rows)


# ---- the pipeline -------------------------------------------------------------------------------
def score_file(model: ServedModel, path: Path, sink, chunk_size: int, shard: Shard, id_column: str,
               text_column: str, workers: int = 1, progress: Callable[[int], Any] = lambda rows: None) -> None:
    fmt = file_format(path)
    layout = layout_for(model, read_header(path, fmt), id_column, text_column)
    chunks = (to_chunk(model, layout, k, table, k * chunk_size)
              for k, table in enumerate(read_chunks(path, fmt, layout, chunk_size)) if shard.owns(k))
    _drain(ordered_map(partial(score_chunk, model), prefetch(chunks), workers), sink, workers, progress)


def score_store(inference, ref, store, sink, chunk_size: int, shard: Shard, workers: int = 1,
                progress: Callable[[int], Any] = lambda rows: None) -> None:
    from mlapi.store.database import chunks as batches

    owned = ((k, ids) for k, ids in enumerate(batches(store.all_ids(), chunk_size)) if shard.owns(k))
    score = lambda job: records_to_scored(job[0], inference.predict_ids(ref, job[1]))  # noqa: E731
    _drain(ordered_map(score, prefetch(owned), workers), sink, workers, progress)


def _drain(scored: Iterator[Scored], sink, workers: int, progress) -> None:
    from threadpoolctl import threadpool_limits

    # Chunks in parallel, not each chunk's arithmetic: BLAS / OpenMP pools of their own in
    # every scorer would oversubscribe the CPUs.
    with threadpool_limits(1) if workers > 1 else contextlib.nullcontext(), contextlib.closing(scored):
        for chunk in scored:  # closing `scored` on an error stops the threads behind it
            sink.write(chunk)
            progress(len(chunk.labels) + len(chunk.failures))


def ordered_map(fn: Callable, items: Iterator, workers: int) -> Iterator:
    """fn(item) on `workers` threads, yielded in the items' order. scikit-learn's native code
    (trees, BLAS) releases the GIL, so chunks score in parallel; at most 2 × workers chunks
    are in flight, which is what bounds memory."""
    pending: collections.deque[Future] = collections.deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="mlapi-score")
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Iterate `items` on a background thread, at most `depth` items ahead; its exceptions are
    raised here, and closing this iterator stops the thread."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            put(_End())
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_End(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="mlapi-bulk", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        worker.join()
