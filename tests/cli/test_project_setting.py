"""`mlapi publish` names a bare topic in the one project the settings resolve (the rule the
logs' trace links follow too), and posts to ML_API_URL when no topic is set."""
import pytest

from mlapi.cli import data, main


@pytest.fixture
def published(monkeypatch):
    for key in ("PUBSUB_TOPIC", "GCP_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "ML_API_URL"):
        monkeypatch.delenv(key, raising=False)
    sent = []
    monkeypatch.setattr(data, "publish_to_topic", lambda topic, body: sent.append((topic, body)) or "message-1")
    monkeypatch.setattr(data, "post_envelope", lambda url, body: sent.append((url, body)) or (200, "{}"))
    return sent


def test_a_bare_topic_is_in_the_deployed_project(published, monkeypatch, capsys):
    monkeypatch.setenv("PUBSUB_TOPIC", "requests")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "ambient")
    monkeypatch.setenv("GCP_PROJECT_ID", "deployed")
    assert main(["publish", '{"id": "1"}']) == 0
    assert published == [("projects/deployed/topics/requests", {"id": "1"})]
    assert capsys.readouterr().out.strip() == "message-1"


def test_a_full_topic_path_needs_no_project(published, monkeypatch):
    monkeypatch.setenv("PUBSUB_TOPIC", "projects/other/topics/t")
    assert main(["publish", '{"ids": ["1", "2"]}']) == 0
    assert published == [("projects/other/topics/t", {"ids": ["1", "2"]})]


def test_a_bare_topic_without_a_project_is_refused(published, monkeypatch):
    monkeypatch.setenv("PUBSUB_TOPIC", "requests")
    with pytest.raises(SystemExit, match="set GCP_PROJECT_ID"):
        main(["publish", '{"id": "1"}'])
    assert published == []


def test_without_a_topic_the_envelope_goes_to_ml_api_url(published, monkeypatch):
    monkeypatch.setenv("ML_API_URL", "http://127.0.0.1:9/")
    assert main(["publish", '{"id": "1"}']) == 0
    assert published == [("http://127.0.0.1:9/pubsub/push", {"id": "1"})]
