"""Logging: one JSON object per line in Cloud Logging's format, or plain text lines.

Cloud Logging reads `severity`, `message`, `httpRequest` and `logging.googleapis.com/trace`
from each stdout line, so a traceback, a request and its trace land together in the console.
Request bodies are never logged; the request id and trace come from the request context.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import sys
import uuid

import orjson

_HANDLER_FLAG = "_mlapi_handler"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# (request id, trace id or None) of the request this thread is answering; set by the HTTP
# layer (Flask's hooks and the predict fast path alike), read by every log line.
current_request: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "current_request", default=None)


def begin_request(request_id_header: str | None, trace_header: str | None) -> contextvars.Token:
    """Name the current request: the caller's X-Request-ID if it is harmless in logs and
    headers, else a fresh one; the trace id from X-Cloud-Trace-Context (TRACE_ID/SPAN_ID;o=1)."""
    given = request_id_header or ""
    request_id = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
    trace_id = (trace_header or "").split("/", 1)[0] or None
    return current_request.set((request_id, trace_id))


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
        request_id = request_fields(self.project).get("request_id")
        record.request = f" [{request_id}]" if request_id else ""
        return super().format(record)


def configure_logging(level: str, log_format: str, project: str | None) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TextFormatter(project) if log_format == "text" else CloudLoggingFormatter(project))
    setattr(handler, _HANDLER_FLAG, True)
    root.addHandler(handler)
    root.setLevel(level)
