"""The one error hierarchy: every error a client can see carries its HTTP status.

Input errors are 4xx, our faults are 5xx, and the two never blur. `http/errors.py` maps
this hierarchy (and werkzeug's own HTTP errors) to JSON in one place.

A 4xx message is for someone who cannot read our code: it says what was wrong AND what to
send instead ("instance 0, column 'age': 'twelve' is not a number; send a number"), and the
details name the place (instance, column) for a program to act on.
"""
from __future__ import annotations

from typing import Any


class MlapiError(Exception):
    """Base class: a message for the client, an HTTP status, optional structured details."""

    status_code = 500

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "status": self.status_code, **self.details}


class BadRequest(MlapiError):
    """The body is not valid JSON, or not of the request's shape at all."""

    status_code = 400


class Unauthorized(MlapiError):
    status_code = 401


class ModelNotFound(MlapiError):
    status_code = 404


class RecordNotFound(MlapiError):
    status_code = 404


class UnsupportedMediaType(MlapiError):
    status_code = 415


class InvalidInput(MlapiError):
    """Well-formed, but does not fit the model (feature count, names, types, no instances);
    details such as `instance` and `column` say where."""

    status_code = 422


class ModelNotReady(MlapiError):
    """The model is configured but failed to load (or is not loaded yet)."""

    status_code = 503


class StoreUnavailable(MlapiError):
    """A database (feature store, predictions table) cannot be reached: transient, retry."""

    status_code = 503


class ConfigurationError(MlapiError):
    """Settings that cannot work; raised at start-up, never per request."""

    status_code = 500


class ArtifactError(MlapiError):
    """An artifact could not be fetched, verified or unpickled; the model is refused."""

    status_code = 503
