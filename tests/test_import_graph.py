"""The core's import graph has no cycles hidden behind function-level imports: the modules
of the login pipeline import each other at module level only, and every core module can be
imported first, on its own, in a fresh interpreter state."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core" / "transom"

#: the login pipeline and the services it calls: none may hide an import inside a function
#: or behind ``TYPE_CHECKING`` (that is how the login/provisioning/groups/directory cycle hid)
PIPELINE = [
    "login.py", "verified.py", "trace.py", "provisioning.py", "groups.py", "directory.py", "attributes.py",
    "loginstate.py", "singleuse.py", "sessions.py", "audit.py", "explain.py",
    *(str(p.relative_to(CORE)) for p in sorted((CORE / "oidc").glob("*.py"))),
    *(str(p.relative_to(CORE)) for p in sorted((CORE / "saml").glob("*.py"))),
    "web/sso_routes.py", "web/saml_routes.py",
]


def _is_transom(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "transom"
    return any(alias.name.split(".")[0] == "transom" for alias in node.names)


def _deferred_transom_imports(path: Path) -> list[str]:
    """Imports of transom modules inside a function, or under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scopes: list[ast.AST] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    scopes += [n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    found = {
        inner.lineno: ast.unparse(inner)
        for scope in scopes
        for inner in ast.walk(scope)
        if isinstance(inner, ast.Import | ast.ImportFrom) and _is_transom(inner)
    }
    return [f"{path.name}:{line}: {text}" for line, text in sorted(found.items())]


def test_pipeline_modules_import_transom_at_module_level_only() -> None:
    assert len(PIPELINE) > 20  # the oidc/ and saml/ packages were found
    found = [line for name in PIPELINE for line in _deferred_transom_imports(CORE / name)]
    assert found == []


def test_the_static_check_sees_a_deferred_import(tmp_path: Path) -> None:
    """The check above would catch the patterns it forbids."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "from transom.errors import LoginRefused\n"
        "if TYPE_CHECKING:\n    from transom.login import LoginTrace\n"
        "def f() -> None:\n    def g() -> None:\n        from transom.groups import sync_user_groups\n",
        encoding="utf-8",
    )
    assert _deferred_transom_imports(sample) == [
        "sample.py:4: from transom.login import LoginTrace",
        "sample.py:7: from transom.groups import sync_user_groups",
    ]


#: the modules of the former login/provisioning/groups/directory cycle, and the pipeline's
#: entry points on each side of it
FIRST_IMPORTS = [
    "transom.login", "transom.provisioning", "transom.groups", "transom.directory", "transom.verified",
    "transom.runtime", "transom.oidc", "transom.oidc.verify", "transom.saml", "transom.saml.verify",
    "transom.explain", "transom.web.app",
]


def test_pipeline_modules_import_first_in_a_fresh_state() -> None:
    """One interpreter; before each module, every ``transom`` module is dropped from
    ``sys.modules`` so that module is the first one imported (third-party libraries stay
    loaded, which keeps this fast). A cycle shows up as an ImportError on a partial module."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {FIRST_IMPORTS!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'transom' or m.startswith('transom.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
