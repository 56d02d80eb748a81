"""The wheel as a user installs it: one top-level package, a client-only footprint, the server extra."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from nextbest.testing import running_server

ROOT = Path(__file__).resolve().parent.parent
SERVER_ONLY = ("vowpalwabbit", "scipy", "matplotlib", "lmdb", "nats-py", "numpy")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout's files (a build in place would leave build/ behind)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    for name in files.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("nextbest-*.whl")
    return path


def _sources() -> set[str]:
    """Every module the repository ships, by its installed path."""
    mapping = {"nextbest": "nextbest", "server": "nextbest/server", "policies": "nextbest/policies"}
    mapping["tools/pinball"] = "nextbest/sim"
    out = set()
    for folder, installed in mapping.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder)
            if folder == "nextbest" or not relative.parts[0].startswith("."):
                out.add(f"{installed}/{relative.as_posix()}")
    return out


def test_the_wheel_holds_one_top_level_package_with_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"nextbest", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    modules = {name for name in names if name.endswith(".py")}
    assert modules == _sources()
    assert "nextbest/v1/types_pb2.pyi" in names
    static = ROOT / "server" / "http" / "static"
    assert {f"nextbest/server/http/static/{f.name}" for f in static.iterdir()} <= set(names)  # the dashboard's page
    assert not any("benchmarks" in name or "gen_proto" in name for name in names)


def _venv(directory: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    return directory / "bin"


def _pip(bin_dir: Path, *args: str) -> None:
    out = subprocess.run([str(bin_dir / "pip"), "install", "-q", *args], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr


def _installed(bin_dir: Path) -> set[str]:
    out = subprocess.run([str(bin_dir / "pip"), "list", "--format=freeze"], capture_output=True, text=True)
    return {line.split("==")[0].lower() for line in out.stdout.split()}


CLIENT_SCRIPT = """
import sys
from nextbest import Client, action
with Client(sys.argv[1]) as nb:
    r = nb.rank([action("a", "email"), action("b", "push")], {"user": {"visits": 3}}, event_id="from-the-wheel")
    assert nb.reward(r.event_id, 1.0) is False
    print(r.chosen_action_id, nb.get_loop("default").name)
"""


def test_client_install_then_server_extra(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    _pip(bin_dir, str(wheel))
    installed = _installed(bin_dir)
    assert {"nextbest", "grpcio", "protobuf"} <= installed
    assert not installed & set(SERVER_ONLY), installed & set(SERVER_ONLY)

    with running_server(tmp_path / "store") as (server, _):
        out = subprocess.run(
            [str(bin_dir / "python"), "-c", CLIENT_SCRIPT, server.address],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() in (["a", "default"], ["b", "default"])
        out = subprocess.run(
            [str(bin_dir / "nextbest"), "loops", "list", "--target", server.address], capture_output=True, text=True
        )
        assert out.returncode == 0 and "default" in out.stdout, out.stderr

    out = subprocess.run([str(bin_dir / "nextbest"), "serve", "--port", "0"], capture_output=True, text=True)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("nextbest serve: needs the server install: pip install 'nextbest[server]'")

    _pip(bin_dir, f"{wheel}[server]")
    assert set(SERVER_ONLY) <= _installed(bin_dir)
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.Popen(
        [str(bin_dir / "nextbest"), "serve", "--port", "0", "--store", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert re.search(r"serving on 127\.0\.0\.1:\d+", line), line + proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    out = subprocess.run(  # not from the checkout, whose nextbest/ folder `-m` would import instead
        [str(bin_dir / "python"), "-m", "nextbest", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0 and "serve" in out.stdout
