"""Code-shape rules the project holds itself to, checked over the library's syntax trees."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def library_functions():
    for package in ("omni_msa", "classic_msa"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_library_function_is_longer_than_60_lines():
    lengths = dict(library_functions())
    assert len(lengths) > 500, "the walk must see the whole library"
    longest = max(lengths, key=lengths.get)
    too_long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
    print(f"longest library function: {longest}, {lengths[longest]} lines")
