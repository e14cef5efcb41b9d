"""Benchmark reports carry only numbers their scripts compute: no measured-looking literal in their text.

Every decimal, percentage, ratio ("3.1x") or thousands-separated number in a benchmark script's
string literals must come from a formatted value, not typed prose (docstrings, argparse help and
plot styling aside). This caught the hand-typed profiler shares, multiply-add counts and seeds
that earlier reports held.
"""

import ast
import re
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))
NUMBER = re.compile(r"(?<![\w.^])(\d+\.\d+|\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?x(?![\w\d]))")
EXEMPT_CALLS = ("add_argument", "ArgumentParser")
EXEMPT_KEYWORDS = ("c", "color", "ls", "linestyle", "fmt")


def _exempt(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))  # docstrings
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in EXEMPT_CALLS:
            ids.update(id(sub) for sub in ast.walk(node))
        if isinstance(node, ast.keyword) and node.arg in EXEMPT_KEYWORDS:
            ids.add(id(node.value))
    return ids


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_no_typed_numbers_in_report_text(path):
    tree = ast.parse(path.read_text())
    exempt = _exempt(tree)
    typed = [f"line {node.lineno}: {m.group(0)!r} in {node.value[:70]!r}"
             for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in exempt
             for m in NUMBER.finditer(node.value)]
    assert not typed, "format these from computed values:\n" + "\n".join(typed)
