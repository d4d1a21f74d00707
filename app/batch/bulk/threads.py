"""Bulk scoring's threads: a reader running ahead of the scorers (`prefetch`), and scorers
whose results come back in input order (`ordered_map`). Both bound how many chunks are in
flight, which is what bounds memory, and both stop their threads when closed early."""
from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator


def ordered_map(fn: Callable, items: Iterator, workers: int) -> Iterator:
    """fn(item) on `workers` threads, yielded in the items' order. scikit-learn's native code
    (trees, BLAS) releases the GIL, so chunks score in parallel; at most 2 × workers chunks
    are in flight."""
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
