"""The progress bar every long-running `mlapi` command shows (imports, syncs, bulk scoring)."""
from __future__ import annotations

import sys


def progress_bar(description: str, total: int | None = None):
    """A tqdm bar counting rows on stderr; disable=None: a bar on a terminal, silence in logs
    (Cloud Run, CI)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=" rows", unit_scale=True, file=sys.stderr, disable=None)
