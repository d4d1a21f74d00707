"""The WSGI entry point for uWSGI (`module = app.wsgi:application`) and gunicorn.

Importing this module loads every model, so the server must import it once in the master,
before forking workers (uWSGI without lazy-apps; gunicorn --preload): workers then share
the model's memory pages copy-on-write.
"""
import gc
import sys

from app import create_app
from app.config import Settings


def import_pandas_without_pyarrow() -> None:
    """Import pandas as if pyarrow were not installed.

    pandas imports pyarrow whenever it is installed (to back its string columns), and
    scikit-learn imports pandas: ~34 MB per server (measured: PSS of the M1 server after load
    228 → 194 MB) for a library the server never uses — pyarrow is here for bulk scoring and
    Parquet imports, which run as their own commands. Without it pandas keeps strings in
    Python objects; models get the same values. pyarrow is hidden only while pandas is
    imported: code that imports pyarrow itself later still gets it (SERVER_PYARROW=1 turns
    this off for a model whose pickle holds pyarrow-backed pandas data).
    """
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        return  # too late to matter: whatever pandas found is already loaded
    sys.modules["pyarrow"] = None  # makes `import pyarrow` raise ImportError
    try:
        import pandas  # noqa: F401
    finally:
        del sys.modules["pyarrow"]


settings = Settings.from_env()
if not settings.server_pyarrow:
    import_pandas_without_pyarrow()
application = app = create_app(settings)

# Everything loaded so far (the libraries, the models) lives as long as the process: move
# it out of the garbage collector's sight before the fork. Otherwise each worker's first
# full collection writes to the header of every one of those objects and so copies every
# page that holds one: measured under load on the peers' benchmark model (M1), the server's
# PSS after the load was 80 MB lower with this line than without (same session, A/B).
gc.freeze()
