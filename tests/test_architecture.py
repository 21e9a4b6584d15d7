"""The architecture as written in pyproject.toml's import-linter contracts, checked on every run.

The contracts: ``pipeline`` never imports ``localcloud``; inside ``pipeline`` the Airflow glue sits
above the stages, the stages above one package per system (which do not import each other), those
above the shared core; ``localcloud`` likewise has one independent package per service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 600


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` (they shadow the installed ones)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def test_import_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, "an import breaks the architecture (see pyproject.toml):\n" + result.stdout[-4000:]
    assert "0 broken" in result.stdout


def test_a_production_module_importing_the_local_cloud_fails_naming_the_import(tmp_path: Path) -> None:
    """The contracts can fail: plant two violations in a copy and read what the linter says."""
    for package in ("pipeline", "localcloud"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (tmp_path / "pipeline" / "oss" / "pages.py").open("a") as fh:
        fh.write("\nfrom localcloud.oss.server import LocalOssServer  # planted\n")
    with (tmp_path / "pipeline" / "config.py").open("a") as fh:
        fh.write("\nfrom pipeline.stages import load_partition  # planted\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    assert "pipeline is not allowed to import localcloud" in result.stdout
    assert "pipeline.oss.pages -> localcloud.oss.server" in result.stdout
    assert "pipeline.config is not allowed to import pipeline.stages" in result.stdout


def test_modules_fit_in_a_head() -> None:
    too_long = {
        str(path.relative_to(REPO)): lines
        for package in ("pipeline", "localcloud")
        for path in sorted((REPO / package).rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"split these along a seam a reader would name (limit {MAX_MODULE_LINES} lines): {too_long}"
