"""starlette-ws outside its checkout: the sdist, the wheel built from it, served from elsewhere;
and the checkout served as it is, not installed.

`python -m build` makes the sdist and then the wheel from the unpacked sdist (as pip does from
PyPI), each in an isolated build environment. The wheel goes into a fresh venv with `--no-deps`;
its dependencies (starlette, uvicorn, jinja2) come from this project's environment through a
`.pth` line, which adds that folder to `sys.path` without running its `.pth` files, so the
editable install of this checkout is not on the path: starlette_ws comes from the wheel only.
A second venv made the same way, without the wheel, serves a copy of the source tree.
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

from harness.servers import ROOT, CommandServer, UvicornServer
from starlette_ws.app import create_app
from starlette_ws.settings import Settings

PAGES = {
    "/": "<h1>starlette-ws</h1>",
    "/echo": "<h1>WebSocket Echo</h1>",
    "/items": "<h1>WebSocket Items</h1>",
    "/chat": "<h1>WebSocket Chat</h1>",
}
EVERY_PAGE = {
    **PAGES,
    "/rooms": "<h1>Rooms</h1>",
    "/rooms/lobby": '<span id="room-name">lobby</span>',
    "/health": '"status"',
    "/metrics": "starlette_ws_connections_open",
}
# What the package's servers are started with: nothing of this checkout or of the test environment.
CLEAN_ENV: dict[str, str | None] = {"PYTHONPATH": None, "TEMPLATES_DIR": None, "PROMETHEUS_MULTIPROC_DIR": None}
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


def dependencies_venv(venv: Path) -> Path:
    """The python of a fresh venv that imports this environment's packages (not starlette_ws)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with the wheel installed."""
    python = dependencies_venv(tmp_path_factory.mktemp("venv"))
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
    server = UvicornServer(python=str(installed), cwd=cwd, env=CLEAN_ENV, protocols=False, log_path=cwd / "uvicorn.log")
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


def get_every_page(host: str) -> None:
    for path, text in EVERY_PAGE.items():
        response = httpx2.get(f"http://{host}{path}")
        assert response.status_code == 200, (path, response.text[:300])
        assert text in response.text, path


@pytest.fixture(scope="module")
def commanded(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The venv's `starlette-ws` script, from an empty working directory."""
    cwd = tmp_path_factory.mktemp("command")
    script = installed.parent / "starlette-ws"
    with CommandServer([str(script)], cwd=cwd, env=CLEAN_ENV, log_path=cwd / "log") as server:
        yield f"127.0.0.1:{server.port}"


def test_the_wheels_command_serves_every_page(commanded: str) -> None:
    get_every_page(commanded)


def test_the_wheels_command_declines_a_browsers_deflate_offer(commanded: str) -> None:
    # what browsers offer: `permessage-deflate; client_max_window_bits`
    with connect(f"ws://{commanded}/ws", open_timeout=5, compression="deflate") as websocket:
        assert websocket.request is not None and websocket.response is not None
        offer = websocket.request.headers["Sec-WebSocket-Extensions"]
        assert offer == "permessage-deflate; client_max_window_bits"
        assert "Sec-WebSocket-Extensions" not in websocket.response.headers
        websocket.send("Hello")
        assert websocket.recv(timeout=5) == "Message text was: Hello"


def test_the_wheels_python_m_starlette_ws_help(installed: Path) -> None:
    result = subprocess.run(
        [str(installed), "-m", "starlette_ws", "--help"], cwd=installed.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "settings come from environment variables" in " ".join(result.stdout.split())


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the source tree, and the python of a venv with the dependencies but not the package."""
    source = tmp_path_factory.mktemp("checkout") / "starlette-ws"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    python = dependencies_venv(tmp_path_factory.mktemp("bare-venv"))
    found = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('starlette_ws'))"],
        cwd=python.parent,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "None"  # not installed there
    return source, python


@pytest.mark.parametrize(
    ("app", "args"),
    [("starlette_ws.app:app", []), ("starlette_ws.app:create_app", ["--factory"])],
    ids=["app", "factory"],
)
def test_the_source_tree_serves_every_page_without_install(
    checkout: tuple[Path, Path], app: str, args: list[str]
) -> None:
    source, python = checkout
    env = {**CLEAN_ENV, "PYTHONPATH": "."}
    with UvicornServer(app, python=str(python), cwd=source, env=env, args=args, protocols=False) as server:
        get_every_page(f"127.0.0.1:{server.port}")
        assert "starlette_ws.templates is not installed" not in server.log()
