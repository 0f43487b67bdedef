"""starlette-ws outside its checkout: the sdist, the wheel built from it, served from elsewhere.

`python -m build` makes the sdist and then the wheel from the unpacked sdist (as pip does from
PyPI), each in an isolated build environment. The wheel goes into a fresh venv with `--no-deps`;
its dependencies (starlette, uvicorn, jinja2) come from this project's environment through a
`.pth` line, which adds that folder to `sys.path` without running its `.pth` files, so the
editable install of this checkout is not on the path: starlette_ws comes from the wheel only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient
from websockets.sync.client import connect

from harness.servers import ROOT, UvicornServer
from starlette_ws.app import create_app
from starlette_ws.settings import Settings

PAGES = {
    "/": "<h1>starlette-ws</h1>",
    "/echo": "<h1>WebSocket Echo</h1>",
    "/items": "<h1>WebSocket Items</h1>",
    "/chat": "<h1>WebSocket Chat</h1>",
}
TEMPLATES = sorted(path.name for path in (ROOT / "templates").glob("*.html"))
# Left out of the copy the sdist is built from: setuptools would add every file named in a stale
# `*.egg-info/SOURCES.txt` whatever MANIFEST.in says, and the rest is large or not ours.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", "results"
)


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    source = tmp_path_factory.mktemp("source") / "starlette-ws"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], check=True, capture_output=True)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(dist.wheel)],
        check=True,
        capture_output=True,
    )
    return python


@pytest.fixture(scope="module")
def served(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`uvicorn starlette_ws.app:app` from an empty working directory."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    env: dict[str, str | None] = {"PYTHONPATH": None, "TEMPLATES_DIR": None}
    server = UvicornServer(python=str(installed), cwd=cwd, env=env, protocols=False, log_path=cwd / "uvicorn.log")
    with server:
        yield f"127.0.0.1:{server.port}"


def test_the_sdist_holds_the_readme_templates_tests_harness_and_log_config(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = {
        "README.md",
        "starlette_ws/logging.json",
        "tests/conftest.py",
        "tests/test_package.py",
        "harness/servers.py",
    }
    assert expected | {f"templates/{name}" for name in TEMPLATES} <= names


def test_the_wheel_holds_the_templates_and_log_config(dist: Dist) -> None:
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    expected = {"starlette_ws/logging.json", "starlette_ws/templates/__init__.py"}
    assert expected | {f"starlette_ws/templates/{name}" for name in TEMPLATES} <= names
    assert not [name for name in names if name.startswith(("harness/", "tests/", "comparison/"))]


def test_the_package_is_imported_from_the_wheel(installed: Path) -> None:
    where = subprocess.run(
        [str(installed), "-c", "import starlette_ws.pages as p; print(p.__file__); print(p.package_templates())"],
        cwd=installed.parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    site = str(installed.parent.parent / "lib")
    assert all(path.startswith(site) for path in where), where


def test_the_installed_wheel_serves_every_page_and_the_echo(served: str) -> None:
    for path, heading in PAGES.items():
        response = httpx2.get(f"http://{served}{path}")
        assert response.status_code == 200, (path, response.text[:300])
        assert heading in response.text
    with connect(f"ws://{served}/ws", open_timeout=5) as websocket:
        websocket.send("Hello")
        assert websocket.recv(timeout=5) == "Message text was: Hello"


def test_templates_dir_brings_your_own_pages(tmp_path: Path) -> None:
    (tmp_path / "echo.html").write_text("<p>my own echo page</p>")
    settings = Settings.from_environ({"TEMPLATES_DIR": str(tmp_path)})
    assert settings.templates_dir == tmp_path
    assert Settings.from_environ({}).templates_dir is None
    response = TestClient(create_app(settings)).get("/echo")
    assert response.text == "<p>my own echo page</p>"
