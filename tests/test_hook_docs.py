"""Every hookspec appears in docs/hooks.md with its exact signature (datasette's rule)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from transom import hookspecs
from transom.plugins import HOOK_NAMES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"


def documented_signatures() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^def (transom_\w+)(\(.*?\)(?: -> [^:]+)?):$", text, flags=re.MULTILINE | re.DOTALL):
        found[match.group(1)] = " ".join(match.group(2).split())
    return found


def code_signature(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name))
    return " ".join(str(sig).replace("'", "").split())


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    documented = documented_signatures()
    assert HOOK_NAMES, "no hookspecs found"
    for name in HOOK_NAMES:
        assert name in documented, f"{name} is missing from docs/hooks.md"
        assert documented[name].replace(", )", ")") == code_signature(name), name


def test_docs_name_no_hook_that_does_not_exist() -> None:
    assert set(documented_signatures()) <= set(HOOK_NAMES)


def test_every_hookspec_docstring_has_the_contract_shape() -> None:
    for name in HOOK_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert doc, name
        assert ":return:" in doc, name
        spec_opts = getattr(getattr(hookspecs, name), "transom_spec", {})
        assert ".. versionadded::" in doc, name
        if name != "transom_connector_type":
            # every per-connector hook is routed by type; its docstring says so
            assert "Routed to the plugin of ``connector.type`` only." in doc, name
        if spec_opts.get("firstresult"):
            assert "``None``" in doc, name
