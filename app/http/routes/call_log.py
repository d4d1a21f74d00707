"""The caller's own recent calls of a model (serving/call_log.py): GET
/models/<name>/recent_call_log, and /model/<name>/recent_call_log beside the single-input
routes (http/routes/text.py), which name a model in the singular."""
from __future__ import annotations

from flask import Blueprint, request

from mlapi.http.callers import caller_of
from mlapi.http.routes.common import documented, json_response, services
from mlapi.protocols.response_bodies import RecentCalls

blueprint = Blueprint("call_log", __name__)


@blueprint.get("/models/<name>/recent_call_log")
@blueprint.get("/model/<name>/recent_call_log")
@documented(RecentCalls, errors=(404, 503), tag="call log")
def recent_call_log(name: str):
    """Your own recent calls of this model, newest first

    The successful calls of the model's routes (predict, features, predict_features, the
    single-input routes, predict by id: its input is the id) made with your API key (or, without
    API keys, from your address), kept CALL_LOG_TTL seconds, at most CALL_LOG_SIZE of them; an
    input longer than CALL_LOG_INPUT_CHARS characters of JSON is kept as its cut JSON text. Error
    answers are not logged. Nobody sees another caller's calls. 404 when the server keeps no call
    log (CALL_LOG_SIZE=0); 503 when the shared log (Redis) does not answer."""
    served = services()
    served.registry.entries(name)  # an unknown model: its 404, with the models served
    return json_response({"model": name, "calls": served.call_log.recent(caller_of(request.environ), name)})
