"""POST /pubsub/push with PUSH_AUTH on: only the push subscription's service account gets in.

Real tokens, really verified: RS256 JWTs signed with a key generated here, whose certificate a
local HTTP server publishes in Google's format; the app fetches it from there (the certificates
URL is the one thing pointed elsewhere) and runs google-auth's own verification.
"""
import base64
import datetime
import io
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from mlapi.config import Settings
from mlapi.http import push_auth
from conftest import models_env
from test_pubsub_push import TEXTS, envelope, rows_in as stored_rows, stock

PUSHER = "mlapi-pubsub@demo-project.iam.gserviceaccount.com"
SERVICE_URL = "https://mlapi-4f6pmbdm5q-ew.a.run.app"
# What make deploy sets as PUSH_AUDIENCE and make create-push-subscription as the tokens' audience.
AUDIENCE = "demo-project/europe-west1/mlapi/pubsub/push"


def key_and_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem_key, certificate.public_bytes(serialization.Encoding.PEM).decode()


class Certs:
    """A local stand-in for https://www.googleapis.com/oauth2/v1/certs: {kid: x509 PEM}."""

    def __init__(self):
        self.published: dict[str, str] = {}
        self.rotate()
        self.fetches = 0
        self.status = 200
        certs = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                certs.fetches += 1
                body = json.dumps(certs.published).encode()
                self.send_response(certs.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def rotate(self) -> None:
        """Publish a new key beside the old ones and sign with it from now on, as Google does."""
        self.key, certificate = key_and_certificate()
        self.kid = uuid.uuid4().hex
        self.published[self.kid] = certificate

    def token(self, key=None, kid=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSHER,
                   "email_verified": True, "sub": "1234567890", "iat": now, "exp": now + 3600, **claims}
        signer = crypt.RSASigner.from_string(key or self.key, key_id=kid or self.kid)
        return jwt.encode(signer, payload).decode()


@pytest.fixture
def certs(monkeypatch):
    served = Certs()
    monkeypatch.setattr(push_auth, "GOOGLE_CERTS_URL", served.url)
    yield served
    served.server.shutdown()


@pytest.fixture
def guarded(make_app, trained, tmp_path, certs):
    """An app as deployed: K_SERVICE set (so PUSH_AUTH defaults on), the pusher's account and the
    tokens' audience set."""
    db = f"sqlite:///{tmp_path}/batch.db"
    stock(db)

    def build(**env):
        env = {"K_SERVICE": "mlapi", "PUSH_SERVICE_ACCOUNT": PUSHER, "PUSH_AUDIENCE": AUDIENCE,
               "MODELS": models_env(trained, "text"),
               "FEATURE_STORE_URL": db, "PREDICTIONS_DB_URL": db, **env}
        return make_app(**{k: v for k, v in env.items() if v is not None}).test_client()
    return build, db


def rows_in(db) -> list:
    """The predictions stored, none when the table is not even created yet."""
    import sqlalchemy as sa

    from mlapi.store.database import make_engine
    engine = make_engine(db)
    exists = sa.inspect(engine).has_table("predictions")
    engine.dispose()
    return stored_rows(db) if exists else []


def push(client, token=None, message_id="m-1", base_url="http://mlapi-4f6pmbdm5q-ew.a.run.app", **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    # What Cloud Run's front end passes on: its host, and that the caller spoke HTTPS.
    headers.setdefault("X-Forwarded-Proto", "https")
    return client.post("/pubsub/push", json=envelope({"id": "1", "model": "text"}, message_id),
                       headers=headers, base_url=base_url)


def test_push_auth_is_on_by_default_on_cloud_run_only():
    assert Settings.from_env({"K_SERVICE": "mlapi"}).push_auth is True
    assert Settings.from_env({}).push_auth is False
    assert Settings.from_env({"K_SERVICE": "mlapi", "PUSH_AUTH": "off"}).push_auth is False


def test_the_push_accounts_token_is_accepted_and_the_prediction_stored(guarded, certs, trained):
    build, db = guarded
    client = build()
    answer = push(client, certs.token())
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["stored"] == 1 and rows_in(db) == [("m-1", "1")]
    stored = client.get("/predictions/1").get_json()["predictions"][0]["prediction"]
    assert stored["label"] == trained["text"][1].predict([TEXTS["1"]])[0]
    assert push(client, certs.token(), "m-2").status_code == 200
    # Certificates are fetched once and kept (their max-age), not per push.
    assert certs.fetches == 1


@pytest.mark.parametrize("claims, reason", [
    ({"aud": "https://another-service-4f6pmbdm5q-ew.a.run.app"}, "audience"),
    ({"email": "someone-else@demo-project.iam.gserviceaccount.com"}, "service account"),
    ({"email_verified": False}, "service account"),
    ({"iss": "https://evil.example.com"}, "accounts.google.com"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
], ids=["other-audience", "other-account", "email-unverified", "other-issuer", "expired"])
def test_a_token_that_is_not_the_push_accounts_is_refused(guarded, certs, claims, reason):
    build, db = guarded
    answer = push(build(), certs.token(**claims))
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert reason in answer.get_json()["error"]["message"].lower() or reason in answer.get_json()["error"]["message"]
    assert rows_in(db) == []


def test_a_token_signed_by_another_key_is_refused(guarded, certs):
    build, db = guarded
    forged_key, _ = key_and_certificate()
    answer = push(build(), certs.token(key=forged_key))  # the published kid, someone else's key
    assert answer.status_code == 401 and "signature" in answer.get_json()["error"]["message"].lower()
    assert rows_in(db) == []


def jwt_of(*parts: bytes) -> str:
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in parts)


CRAFTED = jwt_of(b"[]", b"{}", b"sig")
# JSON nested deeper than the parser recurses: json.loads raises RecursionError, not a ValueError.
NESTED_HEADER = jwt_of(b"[" * 5000, b"{}", b"sig")
NESTED_PAYLOAD = jwt_of(b'{"alg": "RS256", "kid": "k"}', b"[" * 5000, b"sig")


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt",
                                           f"Bearer {CRAFTED}", f"Bearer {NESTED_HEADER}",
                                           f"Bearer {NESTED_PAYLOAD}"])
def test_no_token_or_a_malformed_one_is_refused_with_json(guarded, authorization):
    build, db = guarded
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = push(build(), **headers)
    assert answer.status_code == 401 and answer.mimetype == "application/json"
    assert answer.get_json()["error"]["status"] == 401
    assert rows_in(db) == []


def test_the_token_is_checked_before_the_fast_path_and_flask_alike(guarded, certs):
    """The fast path answers JSON bodies of a known length; a body without a Content-Length goes
    to Flask. The check sits in front of both."""
    build, db = guarded
    client = build()

    def through_flask(message_id, **headers):
        body = json.dumps(envelope({"id": "1", "model": "text"}, message_id)).encode()
        return client.post("/pubsub/push", input_stream=io.BytesIO(body), content_type="application/json",
                           headers={"X-Forwarded-Proto": "https", **headers},
                           base_url="http://mlapi-4f6pmbdm5q-ew.a.run.app")
    assert through_flask("m-flask").status_code == 401
    assert rows_in(db) == []
    answer = through_flask("m-flask", Authorization=f"Bearer {certs.token()}")
    assert answer.status_code == 200 and rows_in(db) == [("m-flask", "1")]


@pytest.mark.parametrize("host", ["mlapi-4f6pmbdm5q-ew.a.run.app", "another-service-4f6pmbdm5q-ew.a.run.app"])
def test_the_audience_is_the_setting_never_the_requests_host(guarded, certs, host):
    """A proxy in front may forward any Host: a token minted for the URL it names (this service's,
    or another service's whose token was replayed here) is not one for PUSH_AUDIENCE."""
    build, db = guarded
    client = build()
    for audience in (f"https://{host}", f"https://{host}/pubsub/push"):
        answer = push(client, certs.token(aud=audience), base_url=f"http://{host}")
        assert answer.status_code == 401 and "audience" in answer.get_json()["error"]["message"].lower()
    assert rows_in(db) == []


def test_without_an_audience_the_push_fails_closed_with_503(guarded, certs):
    """No PUSH_AUDIENCE (a service deployed by hand): nothing to check the token against, and the
    request's Host is no substitute. Pub/Sub redelivers the message until the setting is there."""
    build, db = guarded
    client = build(PUSH_AUDIENCE=None)
    host_token = certs.token(aud=SERVICE_URL)  # what the Host-derived audience used to accept
    answer = push(client, host_token)
    assert answer.status_code == 503 and "PUSH_AUDIENCE" in answer.get_json()["error"]["message"]
    assert push(client, certs.token()).status_code == 503
    assert rows_in(db) == [] and certs.fetches == 0
    both = push(build(PUSH_AUDIENCE=None, PUSH_SERVICE_ACCOUNT=None), host_token).get_json()["error"]["message"]
    assert "PUSH_SERVICE_ACCOUNT and PUSH_AUDIENCE are not set" in both


def test_without_the_push_account_the_push_fails_closed_with_503(guarded, certs):
    build, db = guarded
    answer = push(build(PUSH_SERVICE_ACCOUNT=None), certs.token())
    assert answer.status_code == 503 and "PUSH_SERVICE_ACCOUNT" in answer.get_json()["error"]["message"]
    assert rows_in(db) == []


def test_unreachable_certificates_ask_pubsub_to_retry(guarded, certs):
    build, db = guarded
    certs.status = 500
    answer = push(build(), certs.token())
    assert answer.status_code == 503 and "certificates" in answer.get_json()["error"]["message"]
    assert rows_in(db) == []


def test_other_routes_and_push_auth_off_are_untouched(guarded, certs):
    build, db = guarded
    guarded_client = build()
    assert guarded_client.get("/healthz").status_code == 200
    assert guarded_client.get("/pubsub/push").status_code == 405  # not a push: no token asked
    open_client = build(PUSH_AUTH="off")
    assert push(open_client).status_code == 200 and rows_in(db) == [("m-1", "1")]
    assert certs.fetches == 0


class Clock:
    """push_auth's `time`, moved forward by hand."""

    def __init__(self):
        self.shift = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.shift


def test_a_new_key_is_fetched_before_the_cached_certificates_expire(guarded, certs, monkeypatch):
    """Google may sign with a key published after our copy of its certificates was taken: a token
    naming a key id the copy lacks makes us fetch them again, once, not wait out their max-age."""
    build, db = guarded
    client = build()
    assert push(client, certs.token(), "m-1").status_code == 200 and certs.fetches == 1
    certs.rotate()
    answer = push(client, certs.token(), "m-2")
    assert answer.status_code == 200, answer.get_json()
    assert certs.fetches == 2 and rows_in(db) == [("m-1", "1"), ("m-2", "1")]
    assert push(client, certs.token(), "m-3").status_code == 200 and certs.fetches == 2  # kept again


def test_unknown_key_ids_refetch_at_most_once_a_minute(guarded, certs, monkeypatch):
    """A flood of tokens naming made-up key ids must not become a flood of requests to Google."""
    clock = Clock()
    monkeypatch.setattr(push_auth, "time", clock)
    build, db = guarded
    client = build()
    assert push(client, certs.token()).status_code == 200 and certs.fetches == 1
    forged_key, _ = key_and_certificate()
    for _ in range(5):
        answer = push(client, certs.token(key=forged_key, kid=uuid.uuid4().hex))
        assert answer.status_code == 401 and "key id" in answer.get_json()["error"]["message"]
    assert certs.fetches == 2  # the first unknown kid fetched again; the next four did not
    clock.shift = push_auth.UNKNOWN_KEY_REFETCH_SECONDS - 1
    assert push(client, certs.token(key=forged_key, kid=uuid.uuid4().hex)).status_code == 401
    assert certs.fetches == 2
    clock.shift = push_auth.UNKNOWN_KEY_REFETCH_SECONDS + 1
    assert push(client, certs.token(key=forged_key, kid=uuid.uuid4().hex)).status_code == 401
    assert certs.fetches == 3
    assert push(client, certs.token(), "m-2").status_code == 200 and certs.fetches == 3  # known kids: cached
    assert rows_in(db) == [("m-1", "1"), ("m-2", "1")]


@pytest.mark.parametrize("token, kid", [
    (jwt.encode(crypt.RSASigner.from_string(key_and_certificate()[0], key_id="abc"), {"a": 1}).decode(), "abc"),
    ("not-a-jwt", None), ("", None), (CRAFTED, None),
    (base64.urlsafe_b64encode(b'{"kid": ["a"]}').decode() + ".e30.sig", None),
    (base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".e30.sig", None),
    (NESTED_HEADER, None),
], ids=["signed", "no-dots", "empty", "json-list", "kid-not-a-string", "not-utf8", "nested-too-deep"])
def test_the_key_id_is_read_from_any_header_without_raising(token, kid):
    assert push_auth.key_id(token) == kid


@pytest.mark.parametrize("data", [b"not json", b"[]", b"[" * 5000], ids=["not-json", "a-list", "nested-too-deep"])
def test_a_certificates_document_that_is_not_one_holds_no_key_ids(data):
    assert push_auth.published_key_ids(data) == frozenset()


@pytest.mark.parametrize("outage", ["error-status", "unreachable"])
def test_a_refetch_that_fails_keeps_the_certificates_until_their_max_age(guarded, certs, monkeypatch, outage):
    """An unknown key id makes us fetch the certificates again; if Google then answers an error
    or cannot be reached, the copy we had still checks the tokens it can (no 503 for every push)
    until its max-age, and the failed fetch is not retried push after push."""
    clock = Clock()
    monkeypatch.setattr(push_auth, "time", clock)
    build, db = guarded
    client = build()
    assert push(client, certs.token(), "m-1").status_code == 200 and certs.fetches == 1
    if outage == "error-status":
        certs.status = 500
    else:
        certs.server.shutdown()
        certs.server.server_close()  # connections refused: google-auth raises TransportError
    forged_key, _ = key_and_certificate()
    answer = push(client, certs.token(key=forged_key, kid=uuid.uuid4().hex), "m-forged")
    assert answer.status_code == 401 and "key id" in answer.get_json()["error"]["message"]
    assert certs.fetches == (2 if outage == "error-status" else 1)  # the refetch was tried
    for message_id in ("m-2", "m-3"):
        answer = push(client, certs.token(), message_id)
        assert answer.status_code == 200, answer.get_json()
    assert certs.fetches == (2 if outage == "error-status" else 1)  # and not retried per push
    # Past their max-age (3600 s) the kept copy is expired as before: with Google still down, 503.
    clock.shift = 3600 + 1
    answer = push(client, certs.token(), "m-4")
    assert answer.status_code == 503 and "certificates" in answer.get_json()["error"]["message"]
    assert rows_in(db) == [("m-1", "1"), ("m-2", "1"), ("m-3", "1")]
