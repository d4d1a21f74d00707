"""The documentation site and the README: the site builds strictly, every page is reachable,
the README stays short and points at pages and anchors that exist, and words a newcomer
cannot decode stay out.

`mkdocs build --strict` with mkdocs.yml's `validation` settings fails on a link to a missing
page or anchor; this is how `make test` checks the docs (`make docs` serves the same site).
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, service_missing

DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 300

# Names from the project's history, not its purpose: benchmark models by number, runs by
# letter, a seed number for a write-up, the name of an earlier prototype.
UNDECODABLE = {
    "speedrun": re.compile(r"speedrun", re.I),
    "seed 00x": re.compile(r"\bseeds? 0\d\d\b", re.I),
    "run A-G": re.compile(r"\b[Rr]un [A-G]\b"),
    "M1/M2": re.compile(r"\bM[12]\b"),
}


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def site_module(name: str):
    """A module mkdocs brings (make install-dev): missing, it skips here and fails under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError:
        service_missing(f"{name} is not installed (mkdocs brings it; make install-dev installs it)")


def mkdocs() -> Path:
    binary = VENV_BIN / "mkdocs"
    if not binary.exists():
        service_missing("mkdocs is not installed in the virtualenv (make install-dev installs it)")
    return binary


def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([str(mkdocs()), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    for page in pages():
        built = site / page.relative_to(DOCS).with_suffix("") / "index.html"
        if page.name == "index.md":
            built = site / page.relative_to(DOCS).parent / "index.html"
        assert built.exists(), f"{page.relative_to(ROOT)} was not built"


def test_the_build_fails_on_a_broken_anchor(tmp_path):
    """The strict build is only a check if a broken anchor does fail it (MkDocs >= 1.6 with
    validation.anchors set): a copy of the site with one bad link must not build."""
    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + "\nSee [nowhere](api.md#no-such-heading).\n",
                     encoding="utf-8")
    done = subprocess.run([str(mkdocs()), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=copy, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no-such-heading" in done.stdout + done.stderr


def nav_pages(entries) -> list[str]:
    """Every page path named in mkdocs.yml's nav, however deep."""
    found = []
    for entry in entries:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                found.extend(nav_pages(value) if isinstance(value, list) else [value])
    return found


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    yaml = site_module("yaml")  # PyYAML comes with mkdocs
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = nav_pages(config["nav"])
    on_disk = [page.relative_to(DOCS).as_posix() for page in pages()]
    assert sorted(set(on_disk) - set(in_nav)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(in_nav) - set(on_disk)) == [], "nav entries without a page"
    assert len(in_nav) == len(set(in_nav)), "a page is in the nav twice"


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {README_MAX_LINES})"


@pytest.mark.parametrize("word", sorted(UNDECODABLE))
def test_no_words_a_newcomer_cannot_decode(word):
    pattern = UNDECODABLE[word]
    hits = []
    for path in [README, *pages()]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert hits == [], f"{word!r} in the docs; say what it is instead:\n" + "\n".join(hits)


def slug(heading: str) -> str:
    """The anchor MkDocs' toc extension gives a heading (its default slugify)."""
    from markdown.extensions.toc import slugify  # Markdown comes with mkdocs

    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    return slugify(re.sub(r"[`*_]", "", text).strip(), "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(match) for match in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M)}


def test_the_readme_links_to_pages_and_anchors_that_exist():
    site_module("markdown")
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local, "the README should point into docs/"
    broken = []
    for link in local:
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else README
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading with that anchor in {path or 'README.md'}")
    assert broken == []


def test_make_docs_serves_the_site_on_docs_port(tmp_path):
    make = shutil.which("make")
    if make is None:
        service_missing("GNU make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "argv"
    stand_in = venv / "bin" / "mkdocs"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n')
    stand_in.chmod(0o755)
    later = max(os.path.getmtime(ROOT / name) for name in ("setup.py", "constraints.txt")) + 3600
    for stamp in (".installed-gcs", ".installed-dev"):  # installed already: make installs nothing
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    (venv / "bin" / "python").symlink_to(VENV_BIN / "python")
    done = subprocess.run([make, "-s", "-C", str(ROOT), "ENV_FILE=/dev/null", "docs", f"VENV={venv}",
                           "DOCS_PORT=8123"], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().split() == ["serve", "--dev-addr", "localhost:8123"]
