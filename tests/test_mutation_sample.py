"""tests/mutation/sample.py: the seeded draw, the equivalents file and the score table (no mutmut run)."""

import pytest

from tests.mutation import sample

NAMES = {f"lmkit.a.x_f__mutmut_{i}": "lmkit/a.py" for i in range(1, 21)}
NAMES.update({f"pilish.b.x_g__mutmut_{i}": "pilish/b.py" for i in range(1, 6)})


def test_the_draw_is_seeded_and_limited_to_the_modules():
    first = sample.draw(NAMES, [], 10, 0, seed=1)
    assert len(first) == 10 == len(set(first)) and first == sample.draw(NAMES, [], 10, 0, seed=1)
    assert first != sample.draw(NAMES, [], 10, 0, seed=2)
    assert set(sample.draw(NAMES, ["pilish/b.py"], 10, 0, seed=1)) == {n for n in NAMES if n.startswith("pilish")}
    per_module = sample.draw(NAMES, [], 0, 3, seed=1)
    assert sum(n.startswith("lmkit") for n in per_module) == 3 and sum(n.startswith("pilish") for n in per_module) == 3
    with pytest.raises(SystemExit, match="no mutants in lmkit/c.py"):
        sample.draw(NAMES, ["lmkit/c.py"], 5, 0, seed=1)


def test_equivalents_match_by_function_and_changed_line_not_by_number(tmp_path):
    path = tmp_path / "equivalent.txt"
    path.write_text("# a comment\n\nlmkit.a.x_f__mutmut_3: `return  x or 1` -- 1 and 0 read alike here\n")
    known = sample.read_equivalents(path)
    diff = "--- lmkit/a.py\n+++ lmkit/a.py\n@@ -1 +1 @@\n-    return x or 0\n+    return  x or 1   \n"
    assert sample.changed_line(diff) == "return  x or 1"
    assert known == {("lmkit.a.x_f", "return  x or 1"): "1 and 0 read alike here"}
    assert (sample.function_of("lmkit.a.x_f__mutmut_17"), sample.changed_line(diff)) in known
    path.write_text("lmkit.a.x_f__mutmut_3 return x\n")
    with pytest.raises(SystemExit, match="equivalent.txt:1: expected"):
        sample.read_equivalents(path)


def test_the_table_leaves_equivalents_out_of_the_score():
    chosen = ["lmkit.a.x_f__mutmut_1", "lmkit.a.x_f__mutmut_2", "lmkit.a.x_f__mutmut_3", "lmkit.a.x_f__mutmut_4",
              "pilish.b.x_g__mutmut_1"]
    status = dict(zip(chosen, ["killed", "timeout", "survived", "no tests", "survived"]))
    text = sample.table(chosen, NAMES, status, {"lmkit.a.x_f__mutmut_3": "why"})
    assert "| lmkit/a.py | 4 | 2 | 1 | 1 | 67% |" in text  # 2 caught of 3 that could be
    assert "| pilish/b.py | 1 | 0 | 1 | 0 | 0% |" in text and "| **all** | 5 | 2 | 2 | 1 | 50% |" in text
