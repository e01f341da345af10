"""House rules checked with the suite: ruff clean, mypy --strict on core/ and plugins/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: import name -> source folder (pyproject's package-dir mapping)
PACKAGES = {
    "transom": ROOT / "core",
    "transom_okta": ROOT / "plugins" / "okta",
    "transom_azure_ad": ROOT / "plugins" / "azure_ad",
    "transom_generic_saml": ROOT / "plugins" / "generic_saml",
}


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (it is in the 'test' extra)")
    return path


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "core", "plugins", "tests", "bench"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    # mypy cannot follow setuptools' editable import hook, so give it the import names as
    # links to the source folders.
    for name, source in PACKAGES.items():
        (tmp_path / name).symlink_to(source, target_is_directory=True)
    args = [_tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / ".cache")]
    for name in PACKAGES:
        args += ["-p", name]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env={"MYPYPATH": str(tmp_path),
                            "PATH": str(Path(sys.executable).parent)})
    assert result.returncode == 0, result.stdout + result.stderr
