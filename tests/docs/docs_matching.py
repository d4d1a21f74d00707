"""Does a command's output match the output a page shows for it?

The rules (the docs convention; docs/development.md repeats them for writers):

1. **JSON.** When the whole expected output parses as JSON, the actual output must too, and the two
   are compared as values:
   - objects: the same keys, in any order; an entry `"...": "..."` allows keys not written;
   - arrays: element by element; an element `"..."` stands for any number of elements (zero too);
   - numbers: equal when the actual value rounded to the decimals written is the expected one
     (`0.98` matches 0.9812 and 0.975, not 0.9749; `1e-05` has five decimals); two integers
     must be equal exactly;
   - strings: equal, where `...` inside the expected string matches any text (`"..."` alone any
     value at all: a string, a number, an object, null);
   - `true`, `false`, `null`: equal; `NaN` matches NaN.
2. **Text.** Otherwise line by line, trailing whitespace and blank lines at either end ignored:
   - a line that is just `...` matches any number of lines (zero too);
   - `...` inside a line matches any text within that line;
   - a line that parses as a JSON object or array is compared with the JSON rules above
     (so JSON-lines output can be written line by line);
   - any other line must be equal.

`mismatch(expected, actual)` returns None when they match, else one line saying why.
"""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from functools import lru_cache

ANY = "..."


class Written:
    """A number as the page writes it: its text says how many decimals count."""

    def __init__(self, text: str):
        self.text = text
        self.value = Decimal(text)

    @property
    def exact(self) -> bool:
        return not self.value.is_nan() and re.fullmatch(r"-?\d+", self.text) is not None

    def __repr__(self) -> str:
        return self.text


def parse_expected_json(text: str):
    """The expected text as JSON with its numbers kept as written; raises ValueError if not JSON."""
    return json.loads(text, parse_float=Written, parse_int=Written, parse_constant=_constant)


def _constant(name: str):
    return Written("NaN") if name == "NaN" else float(name.replace("Infinity", "inf"))


def mismatch(expected: str, actual: str) -> str | None:
    expected_text, actual_text = _trim(expected), _trim(actual)
    try:
        wanted = parse_expected_json(expected_text)
    except ValueError:
        return _text_mismatch(expected_text.splitlines(), actual_text.splitlines())
    try:
        got = json.loads(actual_text)
    except ValueError:
        return "the page shows JSON, the command printed something that is not JSON"
    return json_mismatch(wanted, got)


def json_mismatch(wanted, got, where: str = "$") -> str | None:
    """Compare an expected JSON value (numbers as Written) with an actual one; the first difference."""
    if isinstance(wanted, str) and wanted == ANY:
        return None
    if isinstance(wanted, Written):
        return _number_mismatch(wanted, got, where)
    if isinstance(wanted, dict):
        if not isinstance(got, dict):
            return f"{where}: expected an object, got {_short(got)}"
        open_ended = wanted.get(ANY) == ANY
        keys = [key for key in wanted if not (open_ended and key == ANY)]
        missing = [key for key in keys if key not in got]
        extra = [key for key in got if key not in wanted] if not open_ended else []
        if missing or extra:
            return f"{where}: keys differ: missing {missing}, not on the page {extra}"
        for key in keys:
            found = json_mismatch(wanted[key], got[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(wanted, list):
        if not isinstance(got, list):
            return f"{where}: expected an array, got {_short(got)}"
        return _list_mismatch(wanted, got, where)
    if isinstance(wanted, str):
        if isinstance(got, str) and _wildcard_equal(wanted, got):
            return None
        return f"{where}: expected {json.dumps(wanted)}, got {_short(got)}"
    if type(wanted) is not type(got) or wanted != got:  # true, false, null
        return f"{where}: expected {json.dumps(wanted)}, got {_short(got)}"
    return None


def _number_mismatch(wanted: Written, got, where: str) -> str | None:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"{where}: expected the number {wanted.text}, got {_short(got)}"
    if wanted.value.is_nan():
        return None if isinstance(got, float) and math.isnan(got) else f"{where}: expected NaN, got {got!r}"
    if isinstance(got, float) and (math.isnan(got) or math.isinf(got)):
        return f"{where}: expected {wanted.text}, got {got!r}"
    if wanted.exact and isinstance(got, int):
        return None if Decimal(got) == wanted.value else f"{where}: expected {wanted.text}, got {got}"
    # Half a unit of the last decimal written, either side: 0.98 stands for [0.975, 0.985].
    tolerance = Decimal(5).scaleb(wanted.value.as_tuple().exponent - 1)
    if abs(Decimal(repr(got)) - wanted.value) <= tolerance:
        return None
    return f"{where}: expected {wanted.text} (to the decimals written), got {got!r}"


def _list_mismatch(wanted: list, got: list, where: str) -> str | None:
    if ANY not in wanted:
        if len(wanted) != len(got):
            return f"{where}: expected {len(wanted)} elements, got {len(got)}"
        for index, (w, g) in enumerate(zip(wanted, got)):
            found = json_mismatch(w, g, f"{where}[{index}]")
            if found:
                return found
        return None
    if _list_matches(wanted, got, where):
        return None
    return f"{where}: no way to read {len(got)} elements as the page's {_short(wanted)}"


def _list_matches(wanted: list, got: list, where: str) -> bool:
    if not wanted:
        return not got
    if wanted[0] == ANY:
        return any(_list_matches(wanted[1:], got[k:], where) for k in range(len(got) + 1))
    return bool(got) and json_mismatch(wanted[0], got[0], where) is None \
        and _list_matches(wanted[1:], got[1:], where)


# ---- text ---------------------------------------------------------------------------------------
def _text_mismatch(wanted: list[str], got: list[str]) -> str | None:
    if _lines_match(tuple(wanted), tuple(got)):
        return None
    # Say where, reading greedily: each line after a `...` at its first match.
    j, floating = 0, False
    for index, line in enumerate(wanted):
        if line.strip() == ANY:
            floating = True
            continue
        if floating:
            found = next((k for k in range(j, len(got)) if _line_matches(line, got[k])), None)
            if found is None:
                after = f" after output line {j}" if j else ""
                return f"the page's line {index + 1}, {line!r}, is not in the output{after}"
            j, floating = found + 1, False
        elif j >= len(got):
            return f"output line {j + 1}: expected {line!r}, the output has only {len(got)} lines"
        elif not _line_matches(line, got[j]):
            return f"output line {j + 1}: expected {line!r}, got {got[j]!r}"
        else:
            j += 1
    if not floating and j < len(got):
        return f"the output has {len(got) - j} more lines than the page shows"
    return "the output does not match the lines the page shows"


def _lines_match(wanted: tuple[str, ...], got: tuple[str, ...]) -> bool:
    @lru_cache(maxsize=None)
    def match(i: int, j: int) -> bool:
        if i == len(wanted):
            return j == len(got)
        if wanted[i].strip() == ANY:
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_matches(wanted[i], got[j]) and match(i + 1, j + 1)
    return match(0, 0)


def _line_matches(wanted: str, got: str) -> bool:
    if wanted.lstrip().startswith(("{", "[")):
        try:
            value = parse_expected_json(wanted)
        except ValueError:
            pass
        else:
            try:
                return json_mismatch(value, json.loads(got)) is None
            except ValueError:
                return False
    return _wildcard_equal(wanted, got)


def _wildcard_equal(wanted: str, got: str) -> bool:
    if ANY not in wanted:
        return wanted == got
    pattern = ".*".join(re.escape(part) for part in wanted.split(ANY))
    return re.fullmatch(pattern, got, flags=re.S) is not None


def _trim(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _short(value) -> str:
    text = json.dumps(value, default=lambda v: float(v.value) if isinstance(v, Written) else repr(v))
    return text if len(text) <= 80 else text[:77] + "..."

