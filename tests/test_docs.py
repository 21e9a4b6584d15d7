"""The docs stay true to the tree: every command line, path and test they name exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where the local cloud lived before it left the pipeline package: named in the README as retired.
RETIRED = ("pipeline/local", "pipeline.local")
DOCS = ["README.md", "FAULTS.md", "BENCHMARKS.md", "Makefile"]
SOURCES = [*sorted((REPO / "pipeline").rglob("*.py")), *sorted((REPO / "localcloud").rglob("*.py")),
           *sorted((REPO / "bench").rglob("*.py"))]


def _text(path: Path) -> str:
    # Markdown wraps long commands across lines; join them back.
    return re.sub(r"\s*\n\s*", " ", path.read_text(encoding="utf-8"))


def _named_modules() -> set[tuple[str, str]]:
    found = set()
    for path in [REPO / name for name in DOCS] + SOURCES:
        for module in re.findall(r"(?:python|\$\(PY\)) -m ([A-Za-z_][\w.]*[A-Za-z_])(?![\w.*])", _text(path)):
            found.add((str(path.relative_to(REPO)), module))
    return found


@pytest.mark.parametrize("where, module", sorted(_named_modules()))
def test_every_python_dash_m_runs_something(where: str, module: str) -> None:
    if module in {"pytest", "pip", "venv"}:
        return
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # its parent package does not exist
        spec = None
    if module.startswith(RETIRED):  # retired when the local cloud left pipeline/: must stay gone
        assert spec is None and f"replaces `python -m {module}`" in _text(REPO / "README.md")
        return
    assert spec is not None, f"{where} names `python -m {module}`, which does not exist"
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{where}: {module} has no __main__"


def test_every_path_the_docs_name_exists() -> None:
    missing = []
    for name in DOCS:
        for path in re.findall(r"\b((?:dags|pipeline|localcloud|sql|tests|bench)/[\w./-]*[\w/])", _text(REPO / name)):
            if path.startswith(RETIRED):
                assert not (REPO / path).exists(), f"{name} calls {path} retired, but it exists"
            elif "*" not in path and "<" not in path and not (REPO / path).exists():
                missing.append(f"{name}: {path}")
    assert not missing, missing


def test_every_test_faults_md_points_at_exists() -> None:
    refs = re.findall(r"(tests/[\w/]+\.py)::(\w+)", (REPO / "FAULTS.md").read_text(encoding="utf-8"))
    assert refs
    missing = [
        f"{path}::{name}" for path, name in refs
        if not (REPO / path).exists() or not re.search(rf"def {name}\b", (REPO / path).read_text(encoding="utf-8"))
    ]
    assert not missing, missing
