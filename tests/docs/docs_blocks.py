"""The runnable examples of a Markdown page: its fenced blocks, read the way the docs convention says.

- `console` blocks hold commands (`$ ` lines; a line ending in `\\` continues on the next line)
  each followed by its expected output (the lines up to the next `$ `).
- `bash` / `sh` / `shell` blocks are scripts; `python` blocks are Python programs.
- `<!-- not-tested: reason -->` on the line(s) right before a block (blank lines between allowed)
  marks it as not run; the reason is kept so a test can list it and insist it is not empty.
- Any other info string (text, json, ini, yaml, make, ...) is prose, not an example.

Pure text in, data out: nothing here runs anything (docs_session.py does).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT_LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
RUNNABLE = {"console", *SCRIPT_LANGUAGES}

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
NOT_TESTED = re.compile(r"<!--\s*not-tested\b:?(?P<reason>.*?)-->", re.S)


@dataclass(frozen=True)
class Command:
    """One `$ ` command of a console block and the output the page shows for it."""
    line: int          # 1-based line of the `$ ` in the page
    text: str          # the command, continuation lines joined with newlines (bash reads `\\\n`)
    expected: str      # the lines after it, up to the next command, as written


@dataclass(frozen=True)
class Block:
    line: int                      # 1-based line of the opening fence
    language: str                  # the info string's first word, lower-cased ("" when none)
    body: str                      # the block's text, the fence's indentation removed
    skip_reason: str | None = None  # set when a not-tested comment precedes the block ("" if it gave none)
    commands: tuple[Command, ...] = field(default=())  # console blocks only

    @property
    def runnable(self) -> bool:
        return self.language in RUNNABLE

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


def read_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, in page order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        if fence[0] == "`" and "`" in info:  # an inline code span like ```x```, not a fence
            i += 1
            continue
        body_lines = []
        j = i + 1
        while j < len(lines):
            closing = FENCE.match(lines[j])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) \
                    and not closing["info"].strip():
                break
            body_lines.append(_dedent(lines[j], indent))
            j += 1
        language = _language(info)
        body = "\n".join(body_lines) + ("\n" if body_lines else "")
        commands = tuple(read_console(body, first_line=i + 2)) if language == "console" else ()
        blocks.append(Block(line=i + 1, language=language, body=body,
                            skip_reason=_skip_reason(lines, i), commands=commands))
        i = j + 1
    return blocks


def read_page(path: Path) -> list[Block]:
    return read_blocks(path.read_text(encoding="utf-8"))


def read_console(body: str, first_line: int = 1) -> list[Command]:
    """The commands of a console block; `first_line` is the page line of the block's first line."""
    lines = body.splitlines()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        if not _is_prompt(lines[i]):
            i += 1  # text before the first command is not output of anything
            continue
        start = i
        parts = [lines[i][2:]]
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i])
        i += 1
        output = []
        while i < len(lines) and not _is_prompt(lines[i]):
            output.append(lines[i])
            i += 1
        text = "\n".join(parts).strip()
        if text:
            commands.append(Command(line=first_line + start, text=text, expected="\n".join(output)))
    return commands


def _is_prompt(line: str) -> bool:
    return line.startswith("$ ")


def _language(info: str) -> str:
    # "console title=...", "{.console}", "python linenums=1": the first word names the language
    word = info.split()[0] if info.split() else ""
    return word.strip("{}.").lower()


def _dedent(line: str, indent: int) -> str:
    # A fence indented inside a list item: its lines carry the same indentation (at most).
    removable = len(line) - len(line.lstrip(" "))
    return line[min(indent, removable):]


def _skip_reason(lines: list[str], fence_index: int) -> str | None:
    """The reason of a not-tested comment right before the fence (blank lines may separate them)."""
    k = fence_index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0 or not lines[k].rstrip().endswith("-->"):
        return None
    end = k
    while k >= 0 and "<!--" not in lines[k]:
        k -= 1
    if k < 0:
        return None
    found = NOT_TESTED.search("\n".join(lines[k:end + 1]))
    return " ".join(found["reason"].split()) if found else None
