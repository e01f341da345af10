"""docs/plugin-authors.md shows the worked example's code: every line of its settings and
hooks listings is in examples/acme_idp, so the tutorial cannot drift from the tested plugin."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugin-authors.md"
EXAMPLE = ROOT / "examples" / "acme_idp" / "transom_acme" / "__init__.py"


def listings(section: str) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def test_settings_and_hooks_listings_are_the_examples_code() -> None:
    code = {line.strip() for line in EXAMPLE.read_text(encoding="utf-8").splitlines()}
    shown = [line.strip() for section in ("2. The settings model", "3. The hooks")
             for listing in listings(section) for line in listing.splitlines() if line.strip()]
    assert len(shown) > 20
    missing = [line for line in shown if line not in code]
    assert not missing, f"docs/plugin-authors.md shows lines the example does not have: {missing}"


def test_example_stays_within_sixty_lines() -> None:
    assert len(EXAMPLE.read_text(encoding="utf-8").splitlines()) <= 60
