"""REQUEST_TIMEOUT inside the worker: past it, the thread serving the request gets a
RequestTimeout (a 504 with a JSON body, from the request pipeline), and the worker goes on.

The servers' own timeouts kill the whole worker and leave the client without an answer
(uWSGI's harakiri) or with an HTML page (gunicorn's --timeout), so the app keeps its own, and
the server's stays one second later as the backstop for what this cannot interrupt:

- A request on the process's main thread (uWSGI and gunicorn without threads: the default)
  gets a SIGALRM from a per-process interval timer. Its handler raises in that thread as soon
  as it runs Python again, and a blocking system call (a sleep, a socket read) is interrupted
  for it; a long native call (one predict of scikit-learn's) is not, and finishes first.
- A request on any other thread (granian's blocking threads; uWSGI, gunicorn with threads)
  cannot be signalled: a watchdog thread raises RequestTimeout in it with
  PyThreadState_SetAsyncExc, which takes effect at its next Python instruction, so a blocking
  call or a native one finishes first.
"""
from __future__ import annotations

import _signal
import ctypes
import signal
import threading
import time

from mlapi.errors import RequestTimeout
from mlapi.serving.batching import UNINTERRUPTIBLE

# How often the watchdog looks at the other threads' deadlines: their 504 comes at most this late.
_WATCH_INTERVAL = 0.25


class Deadlines:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._others: dict[int, float] = {}  # thread id → deadline, for the watchdog
        self._watchdog: threading.Thread | None = None
        self._lock = threading.Lock()
        message = (f"the request took longer than {seconds:g} s (REQUEST_TIMEOUT) and was stopped; send "
                   f"fewer instances per request, or raise REQUEST_TIMEOUT on the server")

        class Expired(RequestTimeout):
            # PyThreadState_SetAsyncExc raises a class, instantiated without arguments.
            def __init__(self):
                super().__init__(message)

        self._error = Expired

    # start / stop rather than a context manager: they run around every request, and a
    # generator-based one costs more than the timer itself.
    def start(self) -> int | None:
        """Arm this request's deadline; returns what stop() takes (None: the main thread's timer)."""
        ident = threading.get_ident()
        if ident == threading.main_thread().ident and _signal_is_ours():
            _main_request[:] = [time.monotonic() + self.seconds, self._error]
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            return None
        self._others[ident] = time.monotonic() + self.seconds
        self._start_watchdog()
        return ident

    def stop(self, armed: int | None) -> None:
        if armed is None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _main_request.clear()
            return
        with self._lock:
            if self._others.pop(armed, None) is None:
                # The watchdog fired as the request ended: take back what it has not raised yet.
                _raise_in_thread(armed, None)

    def _start_watchdog(self) -> None:
        # One per Deadlines (one per app: in a server, one per worker process), started by its
        # first request on a thread (a thread started in the master before the fork would not
        # exist in the workers).
        if self._watchdog is not None and self._watchdog.is_alive():
            return
        with self._lock:
            if self._watchdog is None or not self._watchdog.is_alive():
                self._watchdog = threading.Thread(target=self._watch, name="mlapi-request-timeout", daemon=True)
                self._watchdog.start()

    def _watch(self) -> None:
        while True:
            time.sleep(_WATCH_INTERVAL)
            now = time.monotonic()
            with self._lock:
                # (a thread inside a micro-batcher is left until it is out: serving/batching.py)
                for ident in [ident for ident, deadline in list(self._others.items())
                              if now >= deadline and ident not in UNINTERRUPTIBLE]:
                    del self._others[ident]
                    _raise_in_thread(ident, self._error)


# The request running on the main thread: [deadline, error class], empty between requests. One
# per process (there is one main thread), whichever app (tests build many) set the timer.
_main_request: list = []


def _on_alarm(signum, frame) -> None:
    # A SIGALRM that fired just as the request ended is handled once it is over: ignored.
    if _main_request and time.monotonic() >= _main_request[0] - 0.01:
        if threading.get_ident() in UNINTERRUPTIBLE:  # inside a micro-batcher: once it is out
            signal.setitimer(signal.ITIMER_REAL, _WATCH_INTERVAL)
            return
        error = _main_request[1]
        _main_request.clear()
        raise error()


def _signal_is_ours() -> bool:
    """SIGALRM is ours unless something else in the process already handles it."""
    # _signal's getsignal, not signal's: that one turns the answer into an enum member, whose
    # failed lookup for a function costs more than the rest of the timer (every request).
    current = _signal.getsignal(signal.SIGALRM)
    if current is _on_alarm:
        return True
    if current in (signal.SIG_DFL, None):
        signal.signal(signal.SIGALRM, _on_alarm)
        return True
    return False


def _raise_in_thread(ident: int, error: type[BaseException] | None) -> None:
    """Make thread `ident` raise `error` at its next Python instruction (CPython's API; it takes
    the class, not an instance), or with None cancel one not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                               ctypes.py_object(error) if error else ctypes.c_void_p(0))
