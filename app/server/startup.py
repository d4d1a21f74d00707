"""Loading the app in the server's master process, before it forks workers: what is imported,
and how the garbage collector is kept out of the way.

The server imports app/wsgi.py (or granian's launcher calls load_application) once, in the
master, so the workers share the models' and libraries' memory pages copy-on-write. This
module decides what the master imports (nothing the models do not need:
import_scikit_learn_without_pandas, import_pandas) and keeps those pages shared (gc.freeze).
"""
from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING

from mlapi.hidden_imports import import_without

if TYPE_CHECKING:
    from flask import Flask

    from mlapi.config import Settings


def load_application(settings: Settings | None = None, server: str | None = None) -> Flask:
    """create_app(settings), built from the environment when not given, with the start-up
    tuning below; what it loaded is frozen out of the collector's sight before the fork.
    `server`: the server whose master this is (uWSGI and gunicorn are recognised), for model
    reloads, which run in the master (app/server/reloads.py)."""
    # No garbage collection while the server starts: importing scikit-learn, Flask and the models
    # allocates ~200,000 long-lived objects, and the collector would walk them again and
    # again (measured: ~0.09 s of a ~1 s start, M1). This is the recipe of the gc module's docs
    # for a server that forks: disable early, gc.freeze() before the fork (below), enable again.
    gc.disable()
    try:
        from mlapi import create_app
        from mlapi.config import Settings
        from mlapi.server.ready import prepare_for_uwsgi

        settings = settings or Settings.from_env()
        import_scikit_learn_without_pandas()
        app = create_app(settings)  # the models' probes import pandas without pyarrow (serving/loading.py)
        if "pandas" not in sys.modules and any(
                model.feature_names for model in app.extensions["mlapi.services"].registry.models()):
            # A model fitted on a DataFrame is given DataFrames (serving/typed_rows.py): import pandas
            # here, once, so that the workers share it rather than each importing it on its first
            # request.
            import_pandas(settings.server_pyarrow)
        # Under uWSGI: the ready line, logged once the workers are spawned (app/server/ready.py).
        prepare_for_uwsgi(app)
        # POST /admin/reload and the fleet's reloads: in this process, the workers' master.
        # (Imported here: it imports scikit-learn, which must come without pandas, above.)
        from mlapi.server.reloads import install as install_reloads, running_server

        install_reloads(app, server or running_server())

        # Everything loaded so far (the libraries, the models) lives as long as the process: move
        # it out of the garbage collector's sight before the fork. Otherwise each worker's first
        # full collection writes to the header of every one of those objects and so copies every
        # page that holds one: measured under load on the peers' benchmark model (M1), the server's
        # PSS after the load was 80 MB lower with this line than without (same session, A/B).
        gc.freeze()
        return app
    finally:
        # Collection resumes for what the workers allocate (they inherit this state); the frozen
        # objects stay out of its sight. Also after a failed start, for whoever called us.
        gc.enable()


def import_scikit_learn_without_pandas() -> None:
    """scikit-learn imports pandas whenever it is installed (sklearn/utils/fixes.py keeps it
    for a helper that is handed pandas as an argument anyway); a server whose models take
    arrays never uses it, and it is 0.24 s of a ~1.1 s cold start (measured, 100-tree forest).
    So scikit-learn is imported with pandas hidden. pandas is still importable afterwards,
    and scikit-learn finds it then by looking in sys.modules, as it always does.

    Likewise rich: scikit-learn 1.9's fit-time progress bar (sklearn/callback/_progressbar.py)
    imports it whenever it is installed (the dev tools bring it: schemathesis, mkdocs), 54
    modules, ~2 MB and ~35 ms of start-up for a bar a server never draws. It is hidden while
    sklearn.callback is imported; rich itself stays importable."""
    if "sklearn" in sys.modules:
        return
    # sklearn.utils.fixes is the module that imports pandas. charset_normalizer: SciPy imports
    # numpy.f2py, whose Fortran reader takes it (an encoding guesser) when installed, as
    # google-cloud-storage's requests installs it: 9 modules, ~12 ms of every start for a
    # Fortran compiler front end the server never runs (f2py works without it).
    import_without("sklearn.utils.fixes", "pandas", "charset_normalizer")
    # (sklearn.callback imports the progress bar; scikit-learn before 1.9 has neither)
    if "rich" not in sys.modules and importlib.util.find_spec("sklearn.callback") is not None:
        import_without("sklearn.callback", "rich")


def import_pandas(pyarrow_allowed: bool) -> None:
    """Import pandas, by default as if pyarrow were not installed.

    pandas imports pyarrow whenever it is installed, to back its string columns: 34 MB of PSS
    (M1 server after load, 228 → 194 MB) that the server does not use — pyarrow is installed
    for bulk scoring and Parquet imports, which run as their own commands. Without it pandas
    keeps strings as Python objects, and models get the same values. It is hidden only while
    pandas is imported, so code that imports pyarrow itself still gets it; SERVER_PYARROW=1
    lets pandas have it, for a model whose pickle holds pyarrow-backed pandas data.
    """
    if pyarrow_allowed or "pyarrow" in sys.modules:
        importlib.import_module("pandas")
    else:
        import_without("pandas", "pyarrow")
