"""Bulk scoring, the pipeline: read (one thread) → score (`workers` threads) → write (the
caller's thread, in input order), for the chunks this shard owns."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

from mlapi.batch.bulk.read import layout_for, read_chunks, read_header
from mlapi.batch.bulk.score import Scored, records_to_scored, score_chunk, to_chunk
from mlapi.batch.bulk.threads import ordered_map, prefetch
from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel
from mlapi.store.database import chunks as batches
from mlapi.store.files import file_format


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidInput(f"shard index {self.index} is not in 0..{self.count - 1} (shard count {self.count})")

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index


def score_file(model: ServedModel, path: Path, sink, chunk_size: int, shard: Shard, id_column: str,
               text_column: str, workers: int = 1, progress: Callable[[int], Any] = lambda rows: None,
               id_required: bool = False) -> None:
    """An input without `id_column` is keyed by row number, unless `id_required`."""
    fmt = file_format(path)
    layout = layout_for(model, read_header(path, fmt), id_column, text_column, id_required)
    sink.keyed_by(layout.key_column)
    chunks = (to_chunk(layout, k, table, k * chunk_size)
              for k, table in enumerate(read_chunks(path, fmt, layout, chunk_size)) if shard.owns(k))
    _drain(ordered_map(partial(score_chunk, model), prefetch(chunks), workers), sink, workers, progress)


def score_store(inference, ref, store, sink, chunk_size: int, shard: Shard, workers: int = 1,
                progress: Callable[[int], Any] = lambda rows: None) -> None:
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
