"""POST /pubsub/push: Pub/Sub push deliveries. 2xx acknowledges; 503 asks for redelivery.
A JsonBlueprint route: the fast path serves it too."""
from __future__ import annotations

from mlapi.http.routes.common import JsonBlueprint
from mlapi.protocols.pubsub import decode_push
from mlapi.protocols.response_bodies import PushOutcome

blueprint = JsonBlueprint("pubsub", __name__)


@blueprint.post_json("/pubsub/push", decode=decode_push, answer=PushOutcome, errors=(401, 503), tag="batch",
                     call_logged=False)  # a subscription's deliveries, not a caller's calls
def push(services, message):
    """A Pub/Sub push delivery: score the ids in its data, store the predictions

    The batch request is base64 JSON in message.data (BatchData). A message whose data can never be
    processed is recorded as failed and acknowledged (200); 503 asks Pub/Sub to deliver it again.
    With PUSH_AUTH on (the default on Cloud Run), 401 unless the push's OIDC token is the push
    subscription's service account's (http/push_auth.py)."""
    # Envelope and batch request are decoded by the route; the batch core gets a plain BatchMessage.
    return services.batch.handle(message).to_dict()
