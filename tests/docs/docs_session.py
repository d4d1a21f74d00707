"""Run one page's examples in order, as a reader would in a terminal at the checkout's root.

- `console` commands run one by one (`bash -c`, a fresh shell each: no `cd` or `export` carries
  over). A command with output on the page must print output that matches it (docs_matching.py);
  one shown without output must exit 0.
- A server command — `make run ...` or `.venv/bin/mlapi serve ...`, optionally after `VAR=value`
  assignments — starts in the background; the page goes on once GET /readyz answers 200. Output
  shown under it must appear in the server's output by then (`...` implied before and after).
  One server at a time: a new server command stops the one before (the reader's Ctrl-C).
- A block that calls the server (`localhost:8080`) while none runs gets the default server
  started for it: `make run`, as the README's first step says.
- `bash` blocks run as one script with `set -e -o pipefail`; `python` blocks with the project's
  `.venv/bin/python`, each in its own process. Both must exit 0; their output is not compared.
- Reported without being run: a server command in a `bash` block (it would never end; write it
  as `$ make run` in a console block) and the test suite itself (`make test`, `pytest`).
- `localhost:8080` (and any port a page sets with `PORT=`) is rewritten to a free port in what
  runs, and back in what is compared. The environment holds none of the developer's settings.
- Everything a page started is stopped when the page ends.
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ROOT, service_missing
from docs_blocks import SCRIPT_LANGUAGES, Block, Command, read_page
from docs_checkout import Ports, Server, clean_environment, make_checkout, run_shell
from docs_matching import mismatch

COMMAND_TIMEOUT = 120  # seconds for one command or block: a command that would serve forever fails
OUTPUT_GRACE = 5  # seconds a started server gets to print the lines the page shows
DEFAULT_SERVER = "make run"
SERVER_COMMAND = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:make\s+run|\.venv/bin/mlapi\s+serve)(?=\s|$)")
# The test suite itself: run from an example it would run the examples again, for minutes.
TEST_SUITE = re.compile(r"(?:^|[\s;&|(])(?:make\s+(?:\S+=\S*\s+)*test(?:-\S+)?|(?:\S*python\S*\s+-m\s+)?pytest)(?=\s|$)")
TOOLS = ("curl", "make", "jq", "npm", "npx", "node", "docker")


def is_server_command(command: str) -> bool:
    return bool(SERVER_COMMAND.match(command.strip())) and not re.search(r"--(dry-run|help)\b", command)


def cannot_run_here(text: str) -> str | None:
    """Why a command or script line must not run inside the tests, or None."""
    for line in text.splitlines():
        if TEST_SUITE.search(line.split("#")[0]):
            return f"this line runs the test suite, from inside the test suite: {line.strip()!r}; " \
                "mark the block <!-- not-tested: ... -->"
        if any(is_server_command(part) for part in re.split(r"&&|\|\||;", line)) and not line.rstrip().endswith("&"):
            return f"this line would serve until stopped: {line.strip()!r}; write it as `$ make run ...` " \
                "in a console block"
    return None


@dataclass
class Failure:
    page: str
    line: int
    what: str        # the command, or "bash block" / "python block"
    detail: str

    def __str__(self) -> str:
        command = "\n".join("    " + part for part in self.what.splitlines())
        return f"{self.page}:{self.line}:\n{command}\n{self.detail}"


@dataclass
class PageRun:
    page: Path
    workdir: Path          # scratch space for this page: the checkout copy and the logs
    demo_models: Path | None
    failures: list[Failure] = field(default_factory=list)
    servers_started: list[str] = field(default_factory=list)

    def run(self) -> list[Failure]:
        blocks = [b for b in read_page(self.page) if b.runnable and not b.skipped]
        if not blocks:
            return self.failures
        self.name = _display_name(self.page)
        self._check_tools(blocks)
        self.ports = Ports([b.body for b in blocks])
        self.env = clean_environment(self.ports)
        self.checkout = make_checkout(self.workdir / "checkout", self.demo_models)
        (self.workdir / "blocks").mkdir()
        self.server: Server | None = None
        try:
            for block in blocks:
                if not self._run_block(block):
                    break
        finally:
            self._stop_server()
        return self.failures

    # ---- blocks ----------------------------------------------------------------------------
    def _run_block(self, block: Block) -> bool:
        """False when the page cannot go on (a server that did not start)."""
        if block.language == "console":
            for command in block.commands:
                if not self._run_command(command):
                    return False
            return True
        if self.ports.uses_server(block.body) and self.server is None:
            if not self._start_server(DEFAULT_SERVER, "", block.line, default=True):
                return False
        self._run_script(block)
        return True

    def _run_command(self, command: Command) -> bool:
        if is_server_command(command.text):
            return self._start_server(command.text, command.expected, command.line)
        refused = cannot_run_here(command.text)
        if refused:
            self._fail(command.line, command.text, refused)
            return True
        if self.ports.uses_server(command.text) and self.server is None:
            if not self._start_server(DEFAULT_SERVER, "", command.line, default=True):
                return False
        status, output = run_shell(["bash", "-c", self.ports.rewrite(command.text)],
                                   self.checkout, self.env, COMMAND_TIMEOUT)
        output = self.ports.restore(output)
        if status is None:
            self._fail(command.line, command.text, f"still running after {COMMAND_TIMEOUT} s; output so far:\n"
                       + _indent(output, tail=40))
        elif not command.expected.strip():
            if status != 0:
                self._fail(command.line, command.text, f"exit status {status} (the page shows no output, "
                           f"so it must succeed); output:\n" + _indent(output, tail=40))
        else:
            why = mismatch(command.expected, output)
            if why:
                self._fail(command.line, command.text, f"{why}\nexpected (the page):\n{_indent(command.expected)}\n"
                           f"actual (exit status {status}):\n{_indent(output, tail=60)}")
        return True

    def _run_script(self, block: Block) -> None:
        language = SCRIPT_LANGUAGES[block.language]
        what = f"{block.language} block"
        refused = cannot_run_here(block.body) if language == "bash" else None
        if refused:
            self._fail(block.line, what, refused)
            return
        script = self.workdir / "blocks" / f"line{block.line}.{'sh' if language == 'bash' else 'py'}"
        script.write_text(self.ports.rewrite(block.body), encoding="utf-8")
        argv = ["bash", "-e", "-o", "pipefail", str(script)] if language == "bash" \
            else [str(self.checkout / ".venv" / "bin" / "python"), str(script)]
        status, output = run_shell(argv, self.checkout, self.env, COMMAND_TIMEOUT)
        if status != 0:
            state = f"still running after {COMMAND_TIMEOUT} s" if status is None else f"exit status {status}"
            self._fail(block.line, what, f"{state}; output:\n{_indent(self.ports.restore(output), tail=40)}")

    # ---- servers ---------------------------------------------------------------------------
    def _start_server(self, command: str, expected: str, line: int, default: bool = False) -> bool:
        self._stop_server()
        runs = self.ports.rewrite(command)
        if re.search(r"\bmake\s+run\b", runs) and not re.search(r"\bPORT=", runs):
            runs += f" PORT={self.env['PORT']}"
        log = self.workdir / f"server-{len(self.servers_started) + 1}.log"
        self.server = Server(runs, self.checkout, self.env, log)
        self.servers_started.append(command)
        label = command if not default else f"{command}  (the default server, started because this " \
            "example calls localhost:8080 and no server runs)"
        problem = self.server.wait_ready()
        if problem:
            self._fail(line, label, f"{problem}; the server's output:\n{_indent(self._server_output(), tail=60)}")
            return False
        if expected.strip():
            why = self._server_output_mismatch(expected)
            if why:
                self._fail(line, label, f"{why}\nexpected (the page; `...` implied before and after):\n"
                           f"{_indent(expected)}\nthe server's output:\n{_indent(self._server_output(), tail=60)}")
        return True

    def _server_output_mismatch(self, expected: str) -> str | None:
        wanted = f"...\n{expected.strip()}\n..."
        deadline = time.monotonic() + OUTPUT_GRACE
        while True:
            why = mismatch(wanted, self._server_output())
            if why is None or time.monotonic() > deadline:
                return why
            time.sleep(0.2)

    def _server_output(self) -> str:
        return self.ports.restore(self.server.output())

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ---- helpers ---------------------------------------------------------------------------
    def _check_tools(self, blocks: list[Block]) -> None:
        shell = "\n".join([c.text for b in blocks for c in b.commands]
                          + [b.body for b in blocks if SCRIPT_LANGUAGES.get(b.language) == "bash"])
        for tool in TOOLS:
            if re.search(rf"(?:^|[|;&(`]|\$\()\s*{tool}(?=\s|$)", shell, flags=re.M) and not shutil.which(tool):
                service_missing(f"{_display_name(self.page)} runs `{tool}`, which is not installed")

    def _fail(self, line: int, what: str, detail: str) -> None:
        self.failures.append(Failure(self.name, line, what, detail))


def _display_name(page: Path) -> str:
    try:
        return str(page.resolve().relative_to(ROOT))
    except ValueError:
        return str(page)


def _indent(text: str, tail: int | None = None) -> str:
    lines = text.rstrip().splitlines() or ["(nothing)"]
    if tail is not None and len(lines) > tail:
        lines = [f"[... {len(lines) - tail} lines before]"] + lines[-tail:]
    return "\n".join("    " + line for line in lines)
