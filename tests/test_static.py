"""House rules checked with the suite: ruff clean, mypy --strict on core/, plugins/ and the
plugins of examples/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: every package checked with mypy --strict; each folder is named after its import name
#: (core/transom, plugins/<name>/transom_<name>), as pyproject's mypy_path lists them
PACKAGES = ["transom", *sorted(p.parent.name for p in ROOT.glob("plugins/*/transom_*/__init__.py")),
            *sorted(p.parent.name for p in ROOT.glob("examples/*/transom_*/__init__.py"))]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (it is in the 'test' extra)")
    return path


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "core", "plugins", "tests", "bench", "examples"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    args = [_tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / ".cache")]
    for name in PACKAGES:
        args += ["-p", name]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": str(Path(sys.executable).parent)})
    assert result.returncode == 0, result.stdout + result.stderr
