"""The WSGI entry point for uWSGI (`module = app.wsgi:application`) and gunicorn.

Importing this module loads every model, so the server must import it once in the master,
before forking workers (uWSGI without lazy-apps; gunicorn --preload): workers then share
the model's memory pages copy-on-write.
"""
import gc

from app import create_app

application = app = create_app()

# Everything loaded so far (the libraries, the models) lives as long as the process: move
# it out of the garbage collector's sight before the fork. Otherwise each worker's first
# full collection writes to the header of every one of those objects and so copies every
# page that holds one: measured under load on the peers' benchmark model (M1), the server's
# PSS after the load was 80 MB lower with this line than without (same session, A/B).
gc.freeze()
