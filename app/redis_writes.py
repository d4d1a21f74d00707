"""Writes to the shared Redis (REDIS_URL) that no request waits for: the prediction cache's
entries, the call log's calls.

Each process sends its writes on a connection of its own, made as it is forked, as packed RESP
bytes, and returns at once; the replies are read by a later write, when they have arrived
(pipelining without waiting): ~17 µs a write. Measured against the alternatives: a writer
thread cost each request ~120 µs more (its Python competes for the GIL with the next request),
a synchronous write waits ~40 µs on loopback.

Only commands whose reply is one line (+OK, :n, -ERR: SET, LPUSH, LTRIM, EXPIRE...) may be sent:
the replies are counted as newlines, not parsed (~10 µs a reply in Python). Redis counts as
down (redis_outage) when replies are owed and none has come for REDIS_TIMEOUT_MS, when it
refuses a write, or when the connection breaks with replies owed. A write waits for Redis at
most one timeout (to connect, once per interval the caller chooses), queued behind another
request's connect included: whoever comes after a failed one finds Redis down and goes on.

Batched (`batch_seconds`, the call log's): a write that comes within `batch_seconds` of the last
send is only kept (up to MAX_BATCH_BYTES), and goes with the next write after that interval, or
with the process's idle thread (it looks every IDLE_SECONDS) once its requests stop, or as the
process exits (atexit for uWSGI's and gunicorn's workers, multiprocessing's finalizers for
granian's; a killed one loses what it kept); a write after a quiet moment goes at once. A busy
worker then sends one packet every `batch_seconds` instead of one a request: each send cost the
server ~100 µs of CPU a request and Redis ~30 (two system calls here, one read event there, each
on a KVM guest's cold caches), about a third of the pipeline model's throughput at 16 connections
(bench/fleet_bench.py, 2026-12-02 19:43). Where the CPU is only given during requests (Cloud
Run's default, request-based billing) the idle thread does not run between them: what a worker
kept then goes with its next request, or as it stops. `flush` (a read of the call log) sends what
its process kept and waits for the replies without holding the writers' lock.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import select
import threading
import time
import weakref

from mlapi.errors import cut
from mlapi.redis_outage import RedisOutage

log = logging.getLogger(__name__)

IDLE_SECONDS = 0.1  # how often a process's idle thread looks for kept writes no request sent
STARTING = object()  # an idle thread being started
MAX_BATCH_BYTES = 256 * 1024  # kept writes past this go at once: one send stays far below the timeout


def packed(*arguments: bytes) -> bytes:
    """One command in Redis' protocol (RESP), as redis-py's packer writes it, without its
    Python per argument."""
    return b"*%d\r\n" % len(arguments) + b"".join([b"$%d\r\n%s\r\n" % (len(argument), argument)
                                                    for argument in arguments])


class UnwaitedWrites:
    """A process's writes to one Redis, sent without waiting for their replies. `outage` is the
    user's (its warnings name what goes without Redis), `retry_seconds` how long writes are
    dropped unsent after Redis failed (0: every write tries again)."""

    def __init__(self, client, outage: RedisOutage, retry_seconds: float, batch_seconds: float = 0.0):
        import redis

        self.client = client
        self.outage = outage
        self.retry_seconds = retry_seconds
        self.batch_seconds = batch_seconds
        self._start_batch()
        self.timeout_seconds = client.connection_pool.connection_kwargs.get("socket_timeout") or 1.0
        self.errors = (redis.RedisError, OSError)
        self.timeout_error = redis.TimeoutError
        self.connection = client.connection_pool.make_connection()  # remade in each process
        self.pid = os.getpid()  # whose connection and kept writes these are
        self.unread = 0
        self.replies_sent = self.replies_read = 0  # counted over the process's life: flush waits on them
        self.answered_at = 0.0  # when a reply last arrived, or the first unanswered write went
        self.lock = threading.Lock()
        # Each worker's connection is made as the worker is forked (uWSGI calls CPython's fork
        # hooks: py-call-uwsgi-fork-hooks), not by its first request's write.
        connected = weakref.WeakMethod(self._connect_forked)
        os.register_at_fork(after_in_child=lambda: connected() and connected()())

    def _connect_forked(self) -> None:
        """In a freshly forked process (one thread: a lock another thread of the parent held
        would never be released here): its connection, if Redis answers in the timeout."""
        self.lock = threading.Lock()
        self._start_batch()
        try:
            self._connection().connect()
        except self.errors as exc:
            self.outage.failed(exc, self.retry_seconds)
        except Exception:  # never fail a fork for it: the first write connects instead
            log.debug("Redis writes: no connection at fork", exc_info=True)

    def _start_batch(self) -> None:
        self.batch: list[bytes] = []  # kept writes (batched only), their bytes and the replies they owe
        self.batch_bytes = self.batch_replies = 0
        self.batch_sent_at = -math.inf  # the first write goes at once
        self.idle_thread = None  # started by the process's first kept write, never in the master

    def send(self, commands: bytes, replies: int) -> None:
        """Send `commands` (packed, owing `replies` one-line replies), or keep them for the next
        send when batched, and return at once; with Redis down they are dropped."""
        if not self.outage.asking():
            return
        if not self.batch_seconds:
            with self.lock:
                self._send_now(commands, replies)
            return
        with self.lock:
            self._connection()  # (after a fork without its hooks: the parent's kept writes are not ours)
            self.batch.append(commands)
            self.batch_bytes += len(commands)
            self.batch_replies += replies
            now = time.monotonic()
            if now - self.batch_sent_at >= self.batch_seconds or self.batch_bytes >= MAX_BATCH_BYTES:
                self._send_batch(now)
                return
            first_kept = self.idle_thread is None
            if first_kept:
                self.idle_thread = STARTING  # started below, outside the lock
        if first_kept:
            self.idle_thread = start_idle_thread(self, "send_if_idle", "idle_thread", IDLE_SECONDS,
                                                 "redis-writes-idle")
            self._flush_at_exit()

    def _flush_at_exit(self) -> None:
        """A worker that stops (a reload's roll, a scale-in) sends what it kept: atexit in
        uWSGI's and gunicorn's workers; a multiprocessing child (granian's workers) ends in
        os._exit after its finalizers, and forgets its parent's, so the finalizer is registered
        here, in the process that keeps writes (flushing twice sends nothing the second time)."""
        from multiprocessing import util

        flush = weakref.WeakMethod(self.flush)
        atexit.register(lambda: (method := flush()) and method())
        util.Finalize(None, lambda: (method := flush()) and method(), exitpriority=10)

    def _send_batch(self, now: float) -> None:
        commands, replies = b"".join(self.batch), self.batch_replies
        self.batch, self.batch_bytes, self.batch_replies, self.batch_sent_at = [], 0, 0, now
        if commands:
            self._send_now(commands, replies)

    def send_if_idle(self) -> None:
        """The idle thread's: send what no request sent for batch_seconds."""
        if not self.batch:  # (read without the lock: the next wake-up sees a write it missed)
            return
        with self.lock:
            now = time.monotonic()
            if self.batch and now - self.batch_sent_at >= self.batch_seconds and self.outage.asking():
                self._send_batch(now)

    def flush(self) -> None:
        """Send what is kept and wait, without holding the lock (requests go on writing), at
        most the timeout for the replies owed so far: a read that follows on another connection
        then finds this process's writes in Redis. A flush that times out says nothing: the next
        write judges whether Redis answers."""
        if not self.outage.asking():
            return
        deadline = time.monotonic() + self.timeout_seconds
        with self.lock:
            self._connection()  # (in a forked process: not the parent's writes to send)
            self._send_batch(time.monotonic())
            until, connection = self.replies_sent, self.connection
        while time.monotonic() < deadline:
            with self.lock:
                if connection is not self.connection or connection._sock is None:
                    return  # reconnected or dropped meanwhile: those writes were judged lost
                try:
                    self._read_arrived(connection)
                except self.errors as exc:
                    self._drop(exc)
                    return
                if self.replies_read >= until:
                    return
                sock = connection._sock
            try:
                arrived(sock, min(0.005, max(0.0, deadline - time.monotonic())))
            except (ValueError, OSError):  # closed by a request meanwhile
                return

    def _drop(self, exc: BaseException) -> None:
        """The connection failed with replies owed: its writes are lost, Redis counts as down."""
        self.connection.disconnect()
        self.connection = self.client.connection_pool.make_connection()
        self.unread = 0
        self.outage.failed(exc, self.retry_seconds)

    def _send_now(self, commands: bytes, replies: int) -> None:
        """Under the lock: send, first reading the replies that have arrived. Asked again here:
        requests that queued on the lock while another waited out a connect must not each wait
        out their own."""
        if not self.outage.asking():
            return
        connection = self._connection()
        try:
            if connection._sock is not None:  # connected: a closed one reads as ready (EOF)
                self._read_arrived(connection, until_empty=True)
        except self.errors as exc:
            if self.unread:  # writes lost: Redis (or the network) dropped them
                self._drop(exc)
                return
            # Dropped while idle (Redis restarted, a network cut healed): a fresh connection
            # is made by the send below, which alone says whether Redis is down.
            connection.disconnect()
        try:
            if connection._sock is None:
                connection.connect()
            if not self.unread:  # (after the connect: its handshake is not a write's wait)
                self.answered_at = time.monotonic()
            connection.send_packed_command([commands], check_health=False)
            self.unread += replies
            self.replies_sent += replies
            self._read_arrived(connection)
            # Replies owed and none for longer than a read may wait: Redis does not answer.
            if self.unread and time.monotonic() - self.answered_at > self.timeout_seconds:
                raise self.timeout_error(f"{self.unread} writes unanswered")
        except self.errors as exc:
            self._drop(exc)

    def _read_arrived(self, connection, until_empty: bool = False) -> None:
        """The replies that have arrived, without waiting for any: reading them frees Redis'
        output buffer; `until_empty` also reads past the last expected one, which finds a
        connection Redis (or the network) has closed. Replies are one line each: newlines
        count them."""
        sock = connection._sock
        while (self.unread or until_empty) and arrived(sock):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("Redis closed the connection")
            if b"-" in data:  # never in "+OK\r\n" nor ":n\r\n" of a count: an error reply
                raise self.timeout_error(f"Redis refused a write: {cut(data.decode(errors='replace'), 200)}")
            read = min(self.unread, data.count(b"\n"))
            self.unread -= read
            self.replies_read += read
            self.answered_at = time.monotonic()
            self.outage.answered()

    def _connection(self):
        # Its own connection, made in the process that writes: replies must never reach a
        # reader on a pooled connection, and a connection must not cross the fork().
        if self.pid != os.getpid():
            self.connection = self.client.connection_pool.make_connection()
            self.pid = os.getpid()
            self.unread = self.replies_sent = self.replies_read = 0
            self._start_batch()  # (a fork without its hooks: the parent's kept writes are its own)
        return self.connection


def arrived(sock, wait: float = 0.0) -> bool:
    """Whether bytes wait on the socket, after waiting up to `wait` seconds for them (a TLS
    socket may hold decrypted ones select cannot see)."""
    pending = getattr(sock, "pending", None)
    return bool((pending is not None and pending()) or select.select([sock], [], [], wait)[0])


def start_idle_thread(owner, method: str, attribute: str, seconds: float, name: str) -> threading.Thread:
    """A daemon thread that calls owner.<method>() every `seconds` while `owner` lives and
    owner.<attribute> is this thread (a process forked since has a thread of its own). It holds
    the GIL only for what it finds to do: a thread waking at every flush interval cost M1 18-25 %
    of its req/s (rate_limit_shared.py), one waking every 0.1-0.25 s nothing measurable."""
    reference = weakref.ref(owner)

    def run() -> None:
        me = threading.current_thread()
        while True:
            time.sleep(seconds)
            found = reference()
            if found is None or getattr(found, attribute) is not me:
                return
            try:
                getattr(found, method)()
            except Exception:  # never let the thread die: the next wake-up tries again
                log.exception("%s: a write to Redis failed", name)
            del found

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
