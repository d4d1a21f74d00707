"""Where a page's examples run: a scratch copy of the checkout, a clean environment, free ports,
and the servers a page starts (`$ make run ...`).

The scratch copy holds what a fresh clone holds (the files git tracks, plus new files not yet
committed and not ignored), the demo models already trained (so `make demo` does not retrain),
and a `.venv` that borrows this checkout's installed virtualenv: its bin/ and lib/ are links,
its install stamps its own and touched after setup.py was copied (with its date), so `make run`
there never reinstalls — and never writes into the shared virtualenv. (Not dated in the future:
make would print clock-skew warnings into the output the pages show.)
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

from conftest import ROOT, VENV_BIN, free_port

DOC_PORT = 8080  # the port the pages use
READY_TIMEOUT = 120  # the first `make run` of a session may compile; later ones take seconds
STOP_TIMEOUT = 10
# Settings of the machine, not of the developer's project: everything else (MODELS, PORT,
# FEATURE_STORE_URL, ... from a .env or a shell) stays out, as on a fresh clone.
KEPT_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "CI")
STAMPS = (".installed-gcs", ".installed-dev")
NESTED_MARK = "MLAPI_RUNNING_DOC_EXAMPLES"


def project_files(root: Path = ROOT) -> list[str]:
    """What a fresh clone holds once the work in progress is committed: tracked files, and new
    ones git does not ignore (a page written but not yet committed is still tested)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (root / name).is_file()})


def make_checkout(dest: Path, demo_models: Path | None, root: Path = ROOT) -> Path:
    for name in project_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target, follow_symlinks=False)
    _borrow_virtualenv(root / ".venv", dest / ".venv")
    if demo_models is not None:
        (dest / "models").mkdir(exist_ok=True)
        for model in demo_models.glob("*.joblib"):
            shutil.copy2(model, dest / "models" / model.name)
    return dest


def _borrow_virtualenv(real: Path, shim: Path) -> None:
    shim.mkdir()
    for entry in real.iterdir():
        if entry.name in STAMPS:
            continue
        if entry.name == "pyvenv.cfg":
            # Python finds its prefix from the pyvenv.cfg beside the bin/ it was started from
            shutil.copy2(entry, shim / entry.name)
        else:
            (shim / entry.name).symlink_to(entry)
    for stamp in STAMPS:
        (shim / stamp).touch()


def clean_environment(ports: "Ports") -> dict[str, str]:
    env = {name: os.environ[name] for name in KEPT_VARIABLES if name in os.environ}
    # A bare `mlapi` must fail as on a fresh clone: the virtualenv is not on PATH.
    venv_bins = {str(VENV_BIN), str(ROOT / ".venv" / "bin")}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                  if part not in venv_bins)
    port = ports.free[DOC_PORT]
    env["PORT"] = str(port)  # `make run` and `mlapi serve` without a port serve here, not on 8080
    env["ML_API_URL"] = f"http://localhost:{port}"  # commands that call the server by default
    env["PYTHONUNBUFFERED"] = "1"  # output in the order a terminal shows it
    env[NESTED_MARK] = "1"  # an example that runs the test suite must not run the examples again
    return env


class Ports:
    """The pages' ports (8080, and any `PORT=N` / `--port N` a page sets) mapped to free ones."""

    SET_IN_PAGE = re.compile(r"(?:\b(?:PORT|OS_PORT)=|--port[ =])(\d{2,5})\b")

    def __init__(self, texts: list[str]):
        doc_ports = {DOC_PORT} | {int(p) for text in texts for p in self.SET_IN_PAGE.findall(text)}
        self.free = {port: free_port() for port in sorted(doc_ports)}

    def rewrite(self, text: str) -> str:
        for doc, free in self.free.items():
            text = re.sub(rf"\b(localhost|127\.0\.0\.1|0\.0\.0\.0):{doc}\b", rf"\g<1>:{free}", text)
            text = re.sub(rf"\b(PORT|OS_PORT)={doc}\b", rf"\g<1>={free}", text)
            text = re.sub(rf"--port([ =]){doc}\b", rf"--port\g<1>{free}", text)
        return text

    def restore(self, output: str) -> str:
        """Output as the reader sees it: the free ports named as the page names them."""
        for doc, free in self.free.items():
            output = re.sub(rf"\b(localhost|127\.0\.0\.1|0\.0\.0\.0):{free}\b", rf"\g<1>:{doc}", output)
        return output

    def uses_server(self, text: str) -> bool:
        return any(re.search(rf"\b(localhost|127\.0\.0\.1):{doc}\b", text) for doc in self.free)


class Server:
    """A server command run in the background, in its own process group, its output in a file."""

    def __init__(self, command: str, cwd: Path, env: dict, log: Path):
        self.command = command
        self.port = _port_of(command, env)
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str | None:
        """None once GET /readyz answers 200, else why not."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"the server exited with status {self.proc.returncode} before it was ready"
            try:
                answer = requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                if answer.status_code == 200:
                    return None
                last = f"{answer.status_code} {answer.text[:300]}"
            except requests.RequestException as exc:
                last = exc.__class__.__name__
            time.sleep(0.2)
        return f"GET /readyz did not answer 200 within {timeout:.0f} s (last: {last})"

    def output(self) -> str:
        self._log.flush()
        return terminal_text(self.log_path.read_bytes())

    def stop(self) -> None:
        """SIGTERM to the whole group (make, the launcher, uWSGI and its workers), SIGKILL if it lingers."""
        for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        try:  # workers left behind by a launcher that exited first
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()


def _port_of(command: str, env: dict) -> int:
    found = re.search(r"(?:\bPORT=|--port[ =])(\d+)", command)
    return int(found.group(1)) if found else int(env["PORT"])


def run_shell(argv: list[str], cwd: Path, env: dict, timeout: float) -> tuple[int | None, str]:
    """Run to the end (or kill its whole process group at the timeout); (status, output as shown)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = None
    return status, terminal_text(out)


def terminal_text(raw: bytes) -> str:
    """What a terminal leaves on screen: a progress bar redrawn with \\r shows its last state."""
    lines = raw.decode("utf-8", errors="replace").split("\n")
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in lines)
