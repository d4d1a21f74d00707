"""The recent call log shared through Redis by real uWSGI servers: calls served by two servers
(two workers each) with one REDIS_URL, batched by each worker, are all in either server's
answer once the idle workers have sent them, each once, newest first."""
import secrets
import time

import pytest
import requests

from conftest import REDIS, as_plain, models_env
from mlapi.http.api_keys import key_id
from mlapi.serving import call_log


@pytest.mark.slow
def test_two_servers_with_one_redis_share_one_call_log_each_call_once(start_server, trained, redis_client):
    key = secrets.token_urlsafe(24)
    env = {"MODELS": models_env(trained, "cancer"), "API_KEYS": key, "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
           "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2", "CALL_LOG_SIZE": "100"}
    first, second = start_server(env), start_server(env)
    rows = as_plain(trained["cancer"][2])
    headers = {"X-API-Key": key}
    sent = []
    with requests.Session() as one, requests.Session() as other:
        for n in range(40):  # back to back: most come within a worker's batch interval
            row = [float(n)] + rows[0][1:]
            client, server = (one, first) if n % 2 else (other, second)
            answer = client.post(f"{server.url}/models/cancer/predict", json={"instances": [row]}, headers=headers,
                                 timeout=10)
            assert answer.status_code == 200, answer.text
            sent.append(row[0])
    # The idle workers' threads send what they kept within 0.1 s; a loaded machine gets 5 s.
    for server in (first, second):
        deadline = time.monotonic() + 5.0
        while True:
            answer = requests.get(f"{server.url}/models/cancer/recent_call_log", headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
            calls = answer.json()["calls"]
            if len(calls) >= len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sorted(call["input"]["instances"][0][0] for call in calls) == sorted(sent)  # each once
        times = [call["called_at"] for call in calls]
        assert times == sorted(times, reverse=True)  # newest first


@pytest.mark.slow
@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_a_stopping_server_sends_the_calls_its_workers_kept(start_server, trained, redis_client, server):
    """SIGTERM (Cloud Run's stop, a scale-in) while each worker keeps calls it has not sent
    (CALL_LOG_BATCH_MS a second, the most it may be): they reach Redis as the workers exit, each once."""
    key = secrets.token_urlsafe(24)
    running = start_server({"MODELS": models_env(trained, "cancer"), "API_KEYS": key, "SERVER": server,
                            "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0", "CALL_LOG_BATCH_MS": "1000",
                            "WEB_CONCURRENCY": "2", "UWSGI_PROCESSES": "2"})
    rows = as_plain(trained["cancer"][2])
    sent = []
    with requests.Session() as client:
        for n in range(12):
            answer = client.post(f"{running.url}/models/cancer/predict", headers={"X-API-Key": key},
                                 json={"instances": [[float(n)] + rows[0][1:]]}, timeout=10)
            assert answer.status_code == 200, answer.text
            sent.append(float(n))
    assert running.stop() == 0
    values = redis_client.lrange(call_log.RedisCallLog.key(f"key:{key_id(key)}", "cancer"), 0, -1)
    found = sorted(call_log.orjson.loads(value)["input"]["instances"][0][0] for value in values)
    assert found == sent  # every call, once
