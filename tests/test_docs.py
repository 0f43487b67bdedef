"""The docs name what is there: every module of the package has its row in docs/architecture.md."""

from __future__ import annotations

import re

from harness.servers import ROOT


def test_the_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "starlette_ws"
    modules = [path.relative_to(package) for path in package.rglob("*.py") if path.name != "__init__.py"]
    named = set(re.findall(r"`([\w/]+\.py)`", page))
    missing = [str(module) for module in modules if module.name not in named and str(module) not in named]
    assert modules and not missing, f"docs/architecture.md does not name: {missing}"
