"""How the servers are launched (launch, limits, granian, gunicorn_hooks) and how the app is
loaded in their master process before the fork (startup)."""
