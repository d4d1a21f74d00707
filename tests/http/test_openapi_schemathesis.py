"""schemathesis against GET /openapi.json of a real uWSGI server: requests generated from the
document (valid and invalid ones) never get a 5xx, and every answer matches what the document
says of it: its status code, content type, headers and body schema.

Bounded to about a minute: a few examples per operation, a time budget, one seed, one worker. Every route
is exercised, the Pub/Sub push and predict-by-id routes too: they need no setup beyond the
empty temporary stores the server starts with (a push with random data is a poison message,
recorded and acknowledged; an unknown id is a 404).
"""
import re
import subprocess

import pytest

from conftest import VENV_BIN, models_env, service_missing

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")


@pytest.mark.slow
def test_every_answer_matches_the_document(start_server, trained, tmp_path):
    schemathesis = VENV_BIN / "schemathesis"
    if not schemathesis.exists():
        service_missing("schemathesis is not installed (make install-dev)")
    server = start_server({"MODELS": models_env(trained, "cancer", "diabetes", "text"), "UWSGI_PROCESSES": "2"},
                          args=("serve", "--server", "uwsgi"))
    run = subprocess.run(
        [str(schemathesis), "--no-color", "run", f"{server.url}/openapi.json",
         "--checks", ",".join(CHECKS), "--max-examples", "6", "--max-time", "45", "--seed", "1", "--workers", "1",
         "--request-timeout", "20", "--generation-database", "none", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)  # its cache stays out of the checkout
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:] + "\n--- server ---\n" + server.output()[-3000:]
    # every operation was tested, with hundreds of generated requests
    assert re.search(r"Selected: (\d+)/\1\s+Tested: \1", output), output[-3000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", output).groups())
    assert generated == passed >= 200, output[-3000:]
