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

One module per stage: read.py (a file → the model's columns, in Arrow chunks), score.py
(a chunk → predictions), write.py (predictions → a file or the predictions table),
pipeline.py (the stages on their threads, sharded); threads.py holds the threading helpers.
"""
from mlapi.batch.bulk.pipeline import Shard, score_file, score_store
from mlapi.batch.bulk.read import require_id_column
from mlapi.batch.bulk.write import FileSink, PredictionsSink
from mlapi.store.files import file_format

__all__ = ["FileSink", "PredictionsSink", "Shard", "file_format", "require_id_column", "score_file",
           "score_store"]
