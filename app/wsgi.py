"""The WSGI entry point for uWSGI (`module = mlapi.wsgi:application`), gunicorn and granian.

Importing this module loads every model, so the server must import it once in the master,
before forking workers (uWSGI without lazy-apps; gunicorn --preload; granian's launcher,
app/server/granian.py): workers then share the model's memory pages copy-on-write. How the
master loads it (what it imports, the garbage collector) is app/server/startup.py's job.
"""
import gc

# Before anything else is imported: no garbage collection while the server starts (the recipe
# of the gc module's docs for a server that forks; load_application enables it again).
gc.disable()

from mlapi.server.uwsgi_router import start_before_loading  # noqa: E402
from mlapi.server.startup import load_application  # noqa: E402  (after gc.disable(), on purpose)

# Under uWSGI, its HTTP router takes $PORT's connections while the models load.
start_before_loading()
application = app = load_application()
