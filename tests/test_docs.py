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


def test_every_module_fits_on_a_screen_or_two() -> None:
    package = ROOT / "starlette_ws"
    lengths = {str(path.relative_to(package)): len(path.read_text().splitlines()) for path in package.rglob("*.py")}
    assert lengths and {name: length for name, length in lengths.items() if length > 350} == {}
