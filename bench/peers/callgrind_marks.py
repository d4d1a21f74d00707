"""Instruction counts of code regions inside one Python process run under callgrind.

Callgrind's client requests (zero the counters, dump them under a name) are C macros, so a
tiny shared library is compiled on first use (needs gcc and valgrind's callgrind.h, Debian's
valgrind package) and called through ctypes. Outside valgrind the requests do nothing.

    marks = Marks()            # None-safe: Marks.available() says whether it could be built
    marks.zero(); run_region(); marks.dump("region")
    ...
    counts = read_dumps(out_prefix)   # {"region": instructions}

Instruction counts do not move with the machine's load, unlike wall clock on a shared box.
"""
from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import tempfile

SOURCE = r"""
#include <valgrind/callgrind.h>
void marks_zero(void) { CALLGRIND_ZERO_STATS; }
void marks_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""
LIBRARY = os.path.join(tempfile.gettempdir(), "mlapi_callgrind_marks.so")


def build() -> str | None:
    """The shared library's path, compiled once; None without gcc or callgrind.h."""
    if os.path.exists(LIBRARY):
        return LIBRARY
    with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as source:
        source.write(SOURCE)
    try:
        done = subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", LIBRARY, source.name],
                              capture_output=True, text=True)
    except OSError:
        return None
    finally:
        os.unlink(source.name)
    return LIBRARY if done.returncode == 0 else None


class Marks:
    def __init__(self):
        path = build()
        self._lib = ctypes.CDLL(path) if path else None

    def available(self) -> bool:
        return self._lib is not None

    def zero(self) -> None:
        if self._lib:
            self._lib.marks_zero()

    def dump(self, name: str) -> None:
        if self._lib:
            self._lib.marks_dump(name.encode())


def read_dumps(out_file: str) -> dict[str, int]:
    """{dump name: instructions} from callgrind's files out_file.N (one per dump)."""
    counts = {}
    for path in sorted(glob.glob(f"{out_file}.*"), key=lambda p: int(p.rsplit(".", 1)[1])):
        name, total = None, None
        with open(path) as f:
            for line in f:
                if line.startswith("desc: Trigger: Client Request: "):
                    name = line.split("Client Request: ", 1)[1].strip()
                elif line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
                    break
        if name is not None and total is not None:
            counts[name] = total
    return counts
