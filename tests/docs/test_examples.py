"""Every example in README.md and docs/**/*.md runs, against a real server started as the README
says, and gives the output the page shows: an example that drifts from the code fails here.

How a page runs: docs_session.py. How output is compared: docs_matching.py. The harness runs
two pages of its own first (tests/docs/fixtures/): one whose examples must all pass, one whose
examples must each fail the way it should.
"""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, VENV_BIN
from docs_blocks import read_page
from docs_checkout import NESTED_MARK
from docs_session import PageRun

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PAGE_TEST = "test_the_examples_on_the_page_give_the_output_it_shows"
PAGES_AT_ONCE = 3
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> Path:
    """The demo models, trained once per session and copied into each page's checkout, so the
    `make demo` inside `make run` finds them (as on a second run) instead of training again."""
    folder = tmp_path_factory.mktemp("demo-models")
    subprocess.run([str(VENV_BIN / "mlapi"), "demo", "--out", str(folder)], check=True,
                   capture_output=True, timeout=300)
    return folder


@pytest.fixture(scope="session")
def page_runs(request, demo_models, tmp_path_factory) -> Iterator[dict[Path, Future]]:
    """The pages this session selected, run side by side, each in its own checkout and ports:
    most of a page's time is a server starting or Python importing scikit-learn, not CPU."""
    if os.environ.get(NESTED_MARK):
        return {}
    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", "") == PAGE_TEST]
    pool = ThreadPoolExecutor(PAGES_AT_ONCE, thread_name_prefix="page")
    runs = {page: pool.submit(PageRun(page, tmp_path_factory.mktemp(page.stem), demo_models).run)
            for page in selected}
    pool.shutdown(wait=False)
    yield runs
    for run in runs.values():  # an interrupted session still stops every page's server
        run.cancel() or run.exception()


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_the_examples_on_the_page_give_the_output_it_shows(page, page_runs):
    if os.environ.get(NESTED_MARK):
        pytest.fail("an example ran the test suite (make test?), which would run the examples again: "
                    "mark that example <!-- not-tested: ... -->")
    failures = page_runs[page].result()  # re-raises a page's skip (a missing tool) or error
    assert not failures, f"{len(failures)} example(s) of {_name(page)} failed:\n\n" + "\n\n".join(map(str, failures))


def test_every_example_not_tested_says_why():
    skipped = [(page, block) for page in PAGES for block in read_page(page) if block.skipped]
    listing = "\n".join(f"  {_name(page)}:{block.line} ({block.language or 'no language'}): "
                        f"{block.skip_reason or '(NO REASON)'}" for page, block in skipped)
    print(f"{len(skipped)} example(s) not tested:\n{listing}")  # shown with pytest -rP
    without_reason = [f"{_name(page)}:{block.line}" for page, block in skipped if not block.skip_reason]
    assert not without_reason, (f"<!-- not-tested: reason --> needs a reason (what it needs that the tests "
                                f"cannot have): {without_reason}\n{listing}")


# ---- the harness on its own pages ---------------------------------------------------------------
@pytest.mark.slow
def test_the_harness_passes_a_page_whose_examples_hold(demo_models, tmp_path):
    run = PageRun(FIXTURES / "page.md", tmp_path, demo_models)
    failures = run.run()
    assert not failures, "\n\n".join(map(str, failures))
    # the default server for the first curl, then the page's own server in its place
    assert run.servers_started == ["make run", "make run MODELS=tiny=models/tiny.joblib"]
    [skipped] = [b for b in read_page(FIXTURES / "page.md") if b.skipped]
    assert skipped.skip_reason == "proves that a skipped block does not run"


def test_the_harness_reports_each_failing_example_with_its_line_and_why(tmp_path):
    failures = PageRun(FIXTURES / "failing.md", tmp_path, None).run()
    found = {(f.line, f.what.splitlines()[0]): f.detail for f in failures}
    assert sorted(found) == [(4, "echo '{\"p\": 0.9812, \"label\": \"setosa\"}'"), (8, "printf 'a\\nb\\n'"),
                             (11, "false"), (14, "bash block"), (20, "python block"), (24, "bash block")], failures
    assert "$.p: expected 0.97 (to the decimals written), got 0.9812" in found[(4, "echo '{\"p\": 0.9812, \"label\": \"setosa\"}'")]
    assert "output line 2: expected 'c', got 'b'" in found[(8, "printf 'a\\nb\\n'")]
    assert "exit status 1" in found[(11, "false")]
    assert "exit status 1" in found[(14, "bash block")] and "not reached" not in found[(14, "bash block")]
    assert "a python block that fails" in found[(20, "python block")]
    assert "would serve until stopped" in found[(24, "bash block")]
    # the block with an empty reason is not run, and the listing test would name it
    [unexplained] = [b for b in read_page(FIXTURES / "failing.md") if b.skipped]
    assert unexplained.skip_reason == "" and unexplained.line == 29
    assert all(str(f).startswith("tests/docs/fixtures/failing.md:") for f in failures)
