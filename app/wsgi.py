"""The WSGI entry point for uWSGI (`module = app.wsgi:application`) and gunicorn.

Importing this module loads every model, so the server must import it once in the master,
before forking workers (uWSGI without lazy-apps; gunicorn --preload): workers then share
the model's memory pages copy-on-write.
"""
from app import create_app

application = app = create_app()
