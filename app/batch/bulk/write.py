"""Bulk scoring, writing: scored chunks → a CSV, Parquet or JSON-lines file (the id, or the
row number for an input without ids, `prediction`, `proba_<class>` per class), or → the
predictions table (batch/recording.py, the same rows Pub/Sub stores)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mlapi.batch.bulk.score import Scored
from mlapi.batch.recording import record_scored
from mlapi.serving.model import ServedModel
from mlapi.store.files import CSV, JSONL, PARQUET, file_format

if TYPE_CHECKING:
    from mlapi.batch.bulk.pipeline import Shard
    from mlapi.store.predictions import PredictionStore


def output_table(model: ServedModel, key_column: str, scored: Scored) -> pa.Table:
    columns: dict[str, Any] = {key_column: pa.chunked_array([pa.array(scored.ids, pa.string())])
                               if isinstance(scored.ids, list) else scored.ids,
                               "prediction": pa.array(scored.labels)}
    if model.has_proba:
        probabilities = scored.proba if scored.proba is not None else np.empty((0, len(model.classes)))
        for i, label in enumerate(model.classes):
            columns[f"proba_{label}"] = np.ascontiguousarray(probabilities[:, i])
    return pa.table(columns)


class _Sink:
    """Counts what was written; keeps a few failures (ids the store could not score) to show."""

    def __init__(self, key_column: str) -> None:
        self.key_column = key_column  # what rows are keyed by: an id column, or `row`
        self.rows = self.failed = 0
        self.failure_examples: dict[str, str] = {}

    def keyed_by(self, key_column: str) -> None:
        """Called before the first chunk, once the input's header says what keys its rows."""
        self.key_column = key_column

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
        super().__init__(id_column)
        self.path, self.model = Path(path), model
        self.format = file_format(self.path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._writer = None

    def write(self, scored: Scored) -> None:
        self.note_failures(scored.failures)
        table = output_table(self.model, self.key_column, scored)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.schema = table.schema
            self._writer = self._open(table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        if self.format == JSONL:
            lines = (orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in table.to_pylist())
            self._writer.write(b"".join(lines))
        else:
            self._writer.write_table(table)
        self.rows += table.num_rows

    def _open(self, schema: pa.Schema):
        if self.format == CSV:
            return pcsv.CSVWriter(str(self.partial), schema)
        if self.format == PARQUET:
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

    def __init__(self, store: PredictionStore, model: ServedModel, run_id: str, shard: Shard):
        super().__init__("entity_id")  # the table's: an input's ids, or its row numbers as text
        self.store, self.model, self.run_id, self.shard = store, model, run_id, shard
        self.stored = 0

    def write(self, scored: Scored) -> None:
        message_id = f"batch:{self.run_id}:{self.shard.index}:{scored.index}"
        ids = scored.id_list()
        self.stored += record_scored(self.store, message_id, self.model, ids, scored.result(self.model),
                                     scored.data, scored.failures)
        self.note_failures(scored.failures)
        self.rows += len(ids)
