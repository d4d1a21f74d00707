"""Logging: one JSON object per line in Cloud Logging's format, or plain text lines.

Cloud Logging reads `severity`, `message`, `httpRequest` and `logging.googleapis.com/trace`
from each stdout line, so a traceback, a request and its trace land together in the console.
Request bodies are never logged; the request id and trace come from the request context.

What a client sends reaches log lines (a URL in the access log, an id in a message), so
neither format lets it make a line of its own: JSON escapes it, and the text format escapes
every control character of a record's fields (a URL's %0d%0a decodes to a line break in
PATH_INFO), indenting a traceback's lines, so every line that starts unindented is a record's
first. The request id and the trace id are taken from the headers only in their own shape.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import sys
import os

import orjson

_HANDLER_FLAG = "_mlapi_handler"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS (Cloud Trace's documented shape): a trace
# id of 32 hex digits, not all zeros; the span id, when given, a decimal 64-bit number; o=0 or 1.
_TRACE_CONTEXT = re.compile(r"(?!0{32})([0-9a-fA-F]{32})(?:/[0-9]{1,20})?(?:;o=[01])?")
# C0 and C1 controls, DEL and Unicode's line and paragraph separators: what a terminal or a
# log viewer may take for the end of a line or a command.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# (request id, trace id or None) of the request this thread is answering; set by the HTTP
# layer (Flask's hooks and the predict fast path alike), read by every log line.
current_request: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "current_request", default=None)


def begin_request(request_id_header: str | None, trace_header: str | None) -> contextvars.Token:
    """Name the current request: the caller's X-Request-ID if it is harmless in logs and
    headers (at most 128 of A-Z a-z 0-9 . _ : -), else a fresh one; the trace id from a
    well-formed X-Cloud-Trace-Context (TRACE_ID/SPAN_ID;o=1), else none."""
    # (no regex run for a header not sent: most requests, every one of them)
    given = request_id_header
    # A fresh id: 32 hex digits of 16 random bytes, as uuid4().hex gave, at a quarter of its cost.
    request_id = given if given and _SAFE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
    trace = _TRACE_CONTEXT.fullmatch(trace_header) if trace_header else None
    return current_request.set((request_id, trace.group(1).lower() if trace else None))


def end_request(token: contextvars.Token) -> None:
    current_request.reset(token)


def current_request_id() -> str:
    ids = current_request.get()
    return ids[0] if ids else ""


def request_fields(project: str | None) -> dict:
    """The current request's id and trace (empty outside a request)."""
    ids = current_request.get()
    if ids is None:
        return {}
    request_id, trace_id = ids
    fields = {"request_id": request_id}
    if trace_id and project:
        fields["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace_id}"
    return fields


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, project: str | None):
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # Error Reporting groups errors by the stack trace found in the message.
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry = {
            "severity": record.levelname,
            "message": message,
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(),
            "logger": record.name,
            "pid": record.process,
        }
        entry.update(request_fields(self.project))
        http_request = getattr(record, "http_request", None)
        if http_request:
            entry["httpRequest"] = http_request
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, project: str | None):
        super().__init__("%(asctime)s %(levelname)s %(name)s [pid %(process)d]%(request)s %(message)s")
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format's steps, each field escaped on the first line and the
        # traceback indented (not the exc_text another handler may have cached on the record).
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        request_id = request_fields(self.project).get("request_id")
        record.request = f" [{request_id}]" if request_id else ""
        lines = [escape_controls(self.formatMessage(record))]
        if record.exc_info:
            lines.append(_indented(self.formatException(record.exc_info)))
        if record.stack_info:
            lines.append(_indented(self.formatStack(record.stack_info)))
        return "\n".join(lines)


def escape_controls(text: str) -> str:
    """`text` on one line: each control character written as its escape (\\n, \\x1b, \\u2028)."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def _indented(text: str) -> str:
    """A traceback's lines, each escaped and indented: none can pass for a record's first line."""
    return "\n".join("    " + escape_controls(line) for line in text.split("\n"))


def configure_logging(level: str, log_format: str, project: str | None) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TextFormatter(project) if log_format == "text" else CloudLoggingFormatter(project))
    setattr(handler, _HANDLER_FLAG, True)
    root.addHandler(handler)
    root.setLevel(level)
