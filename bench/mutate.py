"""Mutation testing over Transom's security checks: one small change to the code at a time,
the tests that pin that code re-run, and every mutant the tests do not notice reported.

    .venv/bin/python bench/mutate.py                 # every target in bench/mutation_targets.toml
    .venv/bin/python bench/mutate.py scim-filter     # one target
    .venv/bin/python bench/mutate.py --list          # the mutants, without running anything
    .venv/bin/python bench/mutate.py provisioning-rules --only provisioning-rules:115:int+1  # some mutants

Each run copies the project into a temporary folder and puts that copy first on
``PYTHONPATH``, so the working tree and the installed packages are never modified. A mutant
is *killed* when the target's tests fail (or time out), *survived* when they pass. Mutants
listed in ``bench/mutation_equivalent.txt`` (``target:line:operator`` with a reason) change
no behaviour and are left out of the score. A second site of the same operator on the same
line gets ``@2`` (``@3``...) after the operator, so every key names one mutant. Results:
docs/security.md.

Operators (each applied at one site at a time): comparison swapped for its opposite
(``==``/``!=``, ``<``/``>=``, ``in``/``not in``, ``is``/``is not``), ``and``/``or`` swapped,
``not`` dropped, an ``if`` condition negated, a ``raise`` replaced by ``pass``, an integer
constant moved by one, ``True``/``False`` swapped.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "bench" / "mutation_targets.toml"
EQUIVALENT = ROOT / "bench" / "mutation_equivalent.txt"
TEST_TIMEOUT_S = 300
#: the pytest plugins the targets' tests need (fixtures, async tests); the others stay unloaded
PYTEST_PLUGINS = ("transom.testing.plugin", "anyio.pytest_plugin")

_SWAP_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
    ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # relative to the project root
    functions: tuple[str, ...]  # empty: the whole module
    tests: tuple[str, ...]  # pytest arguments


@dataclass(frozen=True)
class Mutant:
    target: str
    line: int
    operator: str
    source: str  # the whole mutated module

    @property
    def key(self) -> str:
        return f"{self.target}:{self.line}:{self.operator}"


def load_targets() -> list[Target]:
    data = tomllib.loads(TARGETS.read_text(encoding="utf-8"))
    return [Target(name=name, path=t["path"], functions=tuple(t.get("functions", ())), tests=tuple(t["tests"]))
            for name, t in data.items()]


def _in_scope(tree: ast.Module, functions: tuple[str, ...]) -> set[int]:
    """Ids of the nodes inside the named functions (every node when none are named)."""
    scope: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (not functions or node.name in functions):
            scope.update(id(n) for n in ast.walk(node))
    if not functions:
        scope.update(id(n) for n in ast.walk(tree))
    return scope


def _sites(tree: ast.Module, scope: set[int]) -> Iterator[tuple[ast.AST, str]]:
    for node in ast.walk(tree):
        if id(node) not in scope or (isinstance(node, ast.expr) and _is_docstring_or_annotation(node)):
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _SWAP_COMPARE:
                    yield node, f"compare{i}:{type(op).__name__}"
        elif isinstance(node, ast.BoolOp):
            yield node, f"boolop:{type(node.op).__name__}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "drop-not"
        elif isinstance(node, ast.If):
            yield node, "negate-if"
        elif isinstance(node, ast.Raise):
            yield node, "raise-to-pass"
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            yield node, "int+1"
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            yield node, "bool-swap"


def _is_docstring_or_annotation(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


class _Apply(ast.NodeTransformer):
    def __init__(self, target_id: int, operator: str) -> None:
        self.target_id, self.operator = target_id, operator

    def visit(self, node: ast.AST) -> ast.AST:
        if getattr(node, "_mutation_id", None) != self.target_id:
            return super().visit(node)
        op = self.operator
        if op.startswith("compare") and isinstance(node, ast.Compare):
            i = int(op[len("compare"):op.index(":")])
            node.ops[i] = _SWAP_COMPARE[type(node.ops[i])]()
        elif op.startswith("boolop") and isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif op == "drop-not" and isinstance(node, ast.UnaryOp):
            return node.operand
        elif op == "negate-if" and isinstance(node, ast.If):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        elif op == "raise-to-pass" and isinstance(node, ast.Raise):
            return ast.Pass()
        elif op == "int+1" and isinstance(node, ast.Constant):
            node.value = node.value + 1
        elif op == "bool-swap" and isinstance(node, ast.Constant):
            node.value = not node.value
        return node


def mutants(target: Target) -> list[Mutant]:
    source = (ROOT / target.path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    for n, node in enumerate(ast.walk(tree)):
        node._mutation_id = n  # type: ignore[attr-defined]
    found = []
    seen: dict[tuple[int, str], int] = {}
    for node, operator in _sites(tree, _in_scope(tree, target.functions)):
        mutated = _Apply(node._mutation_id, operator).visit(copy.deepcopy(tree))  # type: ignore[attr-defined]
        ast.fix_missing_locations(mutated)
        line = getattr(node, "lineno", 0)
        # Two sites of one operator on one line (two constants, two `and`s) need distinct keys,
        # or --only and the equivalent list would name both at once: the second is "@2", etc.
        seen[line, operator] = seen.get((line, operator), 0) + 1
        if seen[line, operator] > 1:
            operator = f"{operator}@{seen[line, operator]}"
        found.append(Mutant(target.name, line, operator, ast.unparse(mutated)))
    return found


def equivalent_keys() -> set[str]:
    if not EQUIVALENT.exists():
        return set()
    keys = set()
    for line in EQUIVALENT.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.add(line.split()[0])
    return keys


def _workspace() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="transom-mutate-"))
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache")
    shutil.copytree(ROOT, folder / "src", ignore=ignore)
    return folder / "src"


def run_tests(workspace: Path, target: Target, timeout: float = TEST_TIMEOUT_S) -> bool:
    """True when the tests pass (the mutant survived). ``-x``: one failing test kills the
    mutant, so the rest are not run."""
    paths = [workspace / "core", *sorted(p.parent.parent for p in workspace.glob("plugins/*/transom_*/__init__.py"))]
    # Only the plugins these tests use: autoloading every installed one (schemathesis,
    # hypothesis, xdist) costs seconds per mutant; without xdist the run is serial anyway.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    plugins = [arg for name in PYTEST_PLUGINS for arg in ("-p", name)]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", *plugins, "-p", "no:cacheprovider", *target.tests],
            cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--progress", action="store_true", help="print each mutant's outcome as it is known")
    parser.add_argument("--only", nargs="+", metavar="KEY", default=None,
                        help="run only these mutants (target:line:operator, as --list prints them), "
                        "e.g. to check that a new test kills the survivors of an earlier run")
    args = parser.parse_args()
    targets = [t for t in load_targets() if not args.targets or t.name in args.targets]
    equivalent = equivalent_keys()
    workspace = _workspace()
    baselines: dict[tuple[str, ...], float] = {}  # tests -> seconds of the unmutated run
    try:
        for target in targets:
            found = mutants(target)
            if args.only is not None:
                found = [m for m in found if m.key in args.only]
            if args.list:
                for m in found:
                    print(f"{m.key}{'  (equivalent)' if m.key in equivalent else ''}")
                continue
            original = (workspace / target.path).read_text(encoding="utf-8")
            if target.tests not in baselines:  # the SAML targets share their tests: run them once
                started = time.monotonic()
                if not run_tests(workspace, target):
                    print(f"{target.name}: the tests fail without any mutation; fix them first", file=sys.stderr)
                    return 2
                baselines[target.tests] = time.monotonic() - started
            # A mutant that loops forever is killed by the timeout: five times the unmutated
            # run (a shared machine is noisy), never below a minute, instead of 300 s each.
            timeout = min(TEST_TIMEOUT_S, max(60.0, 5 * baselines[target.tests]))
            survived, killed, skipped = [], 0, 0
            for m in found:
                if m.key in equivalent:
                    skipped += 1
                    continue
                (workspace / target.path).write_text(m.source, encoding="utf-8")
                try:
                    if run_tests(workspace, target, timeout):
                        survived.append(m)
                    else:
                        killed += 1
                    if args.progress:
                        outcome = "survived" if survived and survived[-1] is m else "killed"
                        print(f"  {outcome} {m.key}", flush=True)
                finally:
                    (workspace / target.path).write_text(original, encoding="utf-8")
            total = killed + len(survived)
            score = 100.0 * killed / total if total else 100.0
            print(f"{target.name}: {killed}/{total} killed ({score:.1f} %), {skipped} equivalent left out")
            for m in survived:
                print(f"  survived {m.key}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(workspace.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
