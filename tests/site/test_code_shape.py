"""The house's size limits, checked on every source file: no file over 500 lines and no function
(or method) over 120 lines outside migrations, tests and bench (see README's rules of the house)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {"migrations", "tests", "bench", ".venv", "static", ".git", "node_modules", "media", "private",
             "staticfiles"}
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 120


def source_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.py")
                  if not SKIP_DIRS & set(p.relative_to(REPO).parts[:-1]))


def test_the_scan_sees_the_apps():
    seen = {p.relative_to(REPO).parts[0] for p in source_files()}
    assert {"appareal_site", "labeling", "leaderboard", "modeling", "modelhub"} <= seen


def test_no_file_over_500_lines():
    too_long = {}
    for path in source_files():
        rel = path.relative_to(REPO).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_FILE_LINES:
            too_long[rel] = n
    assert not too_long, f"files over {MAX_FILE_LINES} lines: {too_long}"


def test_no_function_over_120_lines():
    too_long = {}
    for path in source_files():
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long[f"{rel}:{node.lineno} {node.name}"] = n
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"

