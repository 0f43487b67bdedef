"""Lines of code per demo: ours (endpoint module + template, the rest shared) and the FastAPI twin's."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "starlette_ws"
FASTAPI_APP = ROOT / "comparison" / "fastapi_app.py"

SKIPPED_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def relative(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT))


def docstring_node(node: ast.AST) -> ast.stmt | None:
    if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    return node.body[0] if ast.get_docstring(node, clean=False) is not None else None


def docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if first := docstring_node(node):
            lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def python_code_lines(source: str) -> set[int]:
    """Line numbers that hold code: not blank, not only a comment, not part of a docstring."""
    text = source.splitlines()
    counted: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIPPED_TOKENS:
            counted.update(range(token.start[0], token.end[0] + 1))
    counted -= docstring_lines(ast.parse(source))
    return {line for line in counted if line <= len(text) and text[line - 1].strip()}


COMMENT_MARKS = (("<!--", "-->"), ("{#", "#}"), ("/*", "*/"))


def markup_code_lines(text: str) -> int:
    """Non-blank lines of an HTML/Jinja/JS template that are not only a comment."""
    count, closing = 0, ""
    for raw in text.splitlines():
        line = raw.strip()
        if closing:
            closing = "" if closing in line else closing
            continue
        if not line or line.startswith("//"):
            continue
        opener = next(((start, end) for start, end in COMMENT_MARKS if line.startswith(start)), None)
        if opener is None:
            count += 1
        elif opener[1] not in line[len(opener[0]) :]:
            closing = opener[1]
    return count


def code_lines(path: Path) -> int:
    text = path.read_text()
    return len(python_code_lines(text)) if path.suffix == ".py" else markup_code_lines(text)


def role(path: Path) -> str:
    """The first line of a module's docstring, else of its first class or function docstring."""
    if path.suffix != ".py":
        return "template"
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    for node in nodes:
        doc = ast.get_docstring(node)
        if doc:
            return doc.splitlines()[0]
    return ""


@dataclass(frozen=True)
class Section:
    demo: str  # "echo", "items", "chat" or "shared"
    kind: str  # "code" or "page"


MARKER = re.compile(r"^#\s*A\d\.\s*(\w+)", re.M)


def fastapi_markers(source: str) -> list[tuple[int, str]]:
    """[(line, demo)] for the section markers ("# A1. Echo", ...) in fastapi_app.py."""
    found = []
    for match in MARKER.finditer(source):
        found.append((source.count("\n", 0, match.start()) + 1, match[1].lower()))
    return found


def node_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return [target.id for target in targets if isinstance(target, ast.Name)]


def node_section(node: ast.stmt, start: int, markers: list[tuple[int, str]], demos: Sequence[str]) -> Section:
    inside = [demo for line, demo in markers if line <= start]
    if inside:
        return Section(inside[-1], "code")
    names = " ".join(node_names(node)).lower()
    demo = next((demo for demo in demos if demo in names), None)
    if demo is None:
        return Section("shared", "code")
    return Section(demo, "code" if not markers else "page")


def fastapi_sections(path: Path, demos: Sequence[str]) -> dict[Section, int]:
    """Code lines of the FastAPI twin per demo: its marked section (code), and its page constant
    and page route (page); whatever belongs to no demo is "shared"."""
    source = path.read_text()
    counted = python_code_lines(source)
    markers = fastapi_markers(source)
    sizes: dict[Section, int] = {}
    for node in ast.parse(source).body:
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)])
        section = node_section(node, start, markers, demos)
        lines = len(counted & set(range(start, (node.end_lineno or node.lineno) + 1)))
        sizes[section] = sizes.get(section, 0) + lines
    return sizes


def template_dir() -> Path:
    candidates = [PACKAGE / "templates", ROOT / "templates"]
    return next((path for path in candidates if path.is_dir()), candidates[-1])


def demo_names() -> list[str]:
    """The demos, in the order the FastAPI twin's section markers give (echo, items, chat)."""
    markers = [demo for _, demo in fastapi_markers(FASTAPI_APP.read_text())]
    found = [demo for demo in markers if (PACKAGE / f"{demo}.py").exists()]
    return found or [name for name in ("echo", "items", "chat") if (PACKAGE / f"{name}.py").exists()]


def measure_loc() -> dict[str, Any]:
    """loc.json: {demos, markers, ours: {demo: {files, code, page}}, shared: [{path, lines, role}],
    theirs: {demo or "shared": {code, page}}}."""
    demos = demo_names()
    templates = template_dir()
    ours: dict[str, dict[str, Any]] = {}
    demo_files: set[Path] = set()
    for demo in demos:
        module, page = PACKAGE / f"{demo}.py", templates / f"{demo}.html"
        files = [path for path in (module, page) if path.exists()]
        demo_files.update(files)
        ours[demo] = {
            "files": [relative(path) for path in files],
            "code": code_lines(module) if module.exists() else 0,
            "page": code_lines(page) if page.exists() else 0,
        }
    candidates = sorted(PACKAGE.rglob("*.py")) + sorted(templates.glob("*.html"))
    shared = [
        {"path": relative(path), "lines": code_lines(path), "role": role(path)}
        for path in candidates
        if path not in demo_files
    ]
    sizes = fastapi_sections(FASTAPI_APP, demos)
    theirs = {
        name: {"code": sizes.get(Section(name, "code"), 0), "page": sizes.get(Section(name, "page"), 0)}
        for name in [*demos, "shared"]
    }
    markers = bool(fastapi_markers(FASTAPI_APP.read_text()))
    return {"demos": demos, "markers": markers, "ours": ours, "shared": shared, "theirs": theirs}
