"""axe-core (pinned in package.json, installed from npm, never a CDN) on what a Playwright page shows now."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def axe_source() -> str:
    assert AXE.exists(), f"{AXE} is missing: run `make setup` (axe-core is pinned in package.json)"
    return AXE.read_text()


def axe_findings(page: Page) -> list[dict[str, Any]]:
    """axe's serious and critical violations. The script goes in through the DevTools protocol, like any
    Playwright evaluation, so the page keeps its own CSP (which allows no inline script) and no bypass is needed."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    results: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {resultTypes: ['violations'], runOnly: {type: 'tag', values: tags}})", TAGS
    )
    return [v for v in results["violations"] if v["impact"] in BLOCKING]


def readable(findings: list[dict[str, Any]]) -> str:
    lines = []
    for v in findings:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {' '.join(json.dumps(t) for t in node['target'])}")
            lines.append("       " + node["failureSummary"].replace("\n", "\n       "))
    return "\n".join(lines)


def assert_accessible(page: Page, screen: str) -> None:
    """No serious or critical axe finding, and exactly one main landmark and one h1 (axe rates those moderate)."""
    findings = axe_findings(page)
    assert not findings, f"axe on {screen}: {len(findings)} serious or critical violation(s)\n{readable(findings)}"
    expect(page.get_by_role("main"), f"one main landmark on {screen}").to_have_count(1)
    expect(page.get_by_role("heading", level=1), f"one h1 on {screen}").to_have_count(1)
