"""Reading a page's examples (docs_blocks.py): fences, console commands and their output, skips."""
from __future__ import annotations

from docs_blocks import read_blocks, read_console
from docs_session import cannot_run_here, is_server_command

PAGE = """# Title

```console
$ curl -s localhost:8080/readyz
{"status": "ok"}
$ curl -s -X POST localhost:8080/predict \\
    -H 'Content-Type: application/json' \\
    -d '{"instances": [[1, 2]]}'
{"predictions": [0]}
$ make demo
```

Prose with ```inline``` code.

<!-- not-tested: needs a Google Cloud account -->

```bash
make deploy
```

<!-- not-tested:
     needs Docker, which
     CI lacks -->
```bash title="build"
make build-image
```

<!-- a comment that is not a skip -->
```python
print(1)
```

- a list item:

    ```console
    $ echo hi
    hi
    ```

````markdown
```console
$ not a command: inside a longer fence
```
````

```json
{"x": 1}
```
"""


def test_blocks_are_read_with_their_language_line_and_body():
    blocks = read_blocks(PAGE)
    assert [(b.line, b.language) for b in blocks] == [
        (3, "console"), (17, "bash"), (24, "bash"), (29, "python"), (35, "console"), (40, "markdown"), (46, "json")]
    assert blocks[3].body == "print(1)\n"
    assert blocks[4].body == "$ echo hi\nhi\n"  # the list item's indentation removed
    assert blocks[5].body == "```console\n$ not a command: inside a longer fence\n```\n"
    assert [b.runnable for b in blocks] == [True, True, True, True, True, False, False]


def test_console_commands_keep_continuations_and_their_output():
    [curl, post, demo] = read_blocks(PAGE)[0].commands
    assert (curl.line, curl.text, curl.expected) == (4, "curl -s localhost:8080/readyz", '{"status": "ok"}')
    assert post.line == 6
    assert post.text == ("curl -s -X POST localhost:8080/predict \\\n    -H 'Content-Type: application/json' \\\n"
                         "    -d '{\"instances\": [[1, 2]]}'")
    assert post.expected == '{"predictions": [0]}'
    assert (demo.text, demo.expected) == ("make demo", "")
    assert read_blocks(PAGE)[4].commands[0].expected == "hi"


def test_console_text_before_the_first_command_is_no_ones_output():
    [only] = read_console("a stray line\n$ echo x\nx\n\n")
    assert (only.line, only.text, only.expected) == (2, "echo x", "x\n")


def test_a_not_tested_comment_right_before_a_block_skips_it_with_its_reason():
    blocks = read_blocks(PAGE)
    assert blocks[1].skip_reason == "needs a Google Cloud account"  # a blank line between is allowed
    assert blocks[2].skip_reason == "needs Docker, which CI lacks"   # over several lines
    assert [b.skipped for b in blocks] == [False, True, True, False, False, False, False]
    assert read_blocks("<!-- not-tested: -->\n```bash\nexit 1\n```\n")[0].skip_reason == ""
    assert read_blocks("<!-- not-tested -->\n```bash\nexit 1\n```\n")[0].skip_reason == ""


def test_server_commands_are_make_run_and_mlapi_serve():
    for command in ("make run", "make run MODELS=a=models/a.joblib", "MODELS=a=x.joblib make run",
                    ".venv/bin/mlapi serve model.joblib", "LOG_LEVEL=debug .venv/bin/mlapi serve"):
        assert is_server_command(command), command
    for command in ("make run-container", "make demo", ".venv/bin/mlapi serve --dry-run",
                    ".venv/bin/mlapi serve --help", "echo make run", ".venv/bin/mlapi serve-x"):
        assert not is_server_command(command), command


def test_lines_that_cannot_run_inside_the_tests_are_refused_before_running():
    for script in ("make test", "make test PYTEST_ARGS=-x", "make test-sklearn-range", ".venv/bin/python -m pytest -q tests",
                   "cd x && pytest tests/docs"):
        assert "runs the test suite" in cannot_run_here(script), script
    for script in ("make run", "cp a.joblib models/latest.joblib && make run MODELS=", "make run  # serves"):
        assert "would serve until stopped" in cannot_run_here(script), script
    for script in ("make demo\nmake run &", "make testing-notes", "echo pytest-like", "make postman",
                   ".venv/bin/mlapi serve --dry-run"):
        assert cannot_run_here(script) is None, script
