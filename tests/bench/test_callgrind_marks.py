"""bench/peers/callgrind_marks.py: named callgrind dumps read back as instruction counts, and
the client requests harmless outside valgrind."""
from __future__ import annotations

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("peer_callgrind_marks", ROOT / "bench" / "peers" / "callgrind_marks.py")
marks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(marks)


def dump(path, name: str | None, total: int) -> None:
    trigger = f"desc: Trigger: Client Request: {name}\n" if name else "desc: Trigger: Program termination\n"
    path.write_text(f"version: 1\ncreator: callgrind-3.19.0\ncmd: python x.py\n{trigger}"
                    f"positions: line\nevents: Ir\nsummary: {total}\n\nfn=(1) main\n0 {total}\ntotals: {total}\n")


def test_each_named_dump_is_read_in_order_and_the_final_dump_left_out(tmp_path):
    out = tmp_path / "cg"
    dump(tmp_path / "cg.1", "1|records -> DataFrame", 4000)
    dump(tmp_path / "cg.2", "100|records -> DataFrame", 9000)
    dump(tmp_path / "cg.10", "1|whole request", 25000)  # numbered past 9: numeric order, not text
    dump(out, None, 10 ** 9)  # the program's own end-of-run dump: no name, not a step
    assert list(marks.read_dumps(str(out)).items()) == [
        ("1|records -> DataFrame", 4000), ("100|records -> DataFrame", 9000), ("1|whole request", 25000)]


def test_the_client_requests_do_nothing_outside_valgrind():
    counter = marks.Marks()  # compiled with gcc when it can be; a no-op object otherwise
    counter.zero()
    counter.dump("outside valgrind")
