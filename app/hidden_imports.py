"""Imports made as if some installed modules were not: what the server keeps out of its processes.

scikit-learn imports pandas, pandas pyarrow, SciPy's numpy.f2py charset_normalizer, each
whenever it is installed, for features a server does not use (app/server/startup.py says what
each costs). hidden() hides them from the imports made within a block.
"""
from __future__ import annotations

import importlib
import importlib.abc
import sys
from contextlib import contextmanager

# Said when a hidden module is wanted after all, by the code that asks for it.
HINT = {"pyarrow": "set SERVER_PYARROW=1 for a model that needs pyarrow in the server"}


class _Hidden(importlib.abc.MetaPathFinder):
    """An import finder that says the `names` (and their submodules) are not installed."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by mlapi while it loads models"
                                      f"{'; ' + HINT[top] if top in HINT else ''})", name=fullname)
        return None  # the next finder's turn


@contextmanager
def hidden(*modules: str):
    """Within the block, the `modules` not yet imported are as if not installed (an import
    of one raises ModuleNotFoundError); importable again afterwards, for whatever needs them
    later. A finder first on sys.meta_path, not a None entry in sys.modules: code that asks
    whether a module is loaded (scikit-learn looks for pyarrow in sys.modules and then reads its
    classes) must see it absent, not loaded as None. The finder raises rather than answer None
    (`importlib.util.find_spec` of a hidden name raises too), and it hides the modules from
    every thread of the process while the block runs."""
    finder = _Hidden(name for name in modules if name not in sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def import_without(module: str, *hidden_modules: str) -> None:
    """Import `module` as if `hidden_modules` were not installed (only while it is imported)."""
    with hidden(*hidden_modules):
        importlib.import_module(module)
