"""apps/torch_stack.py: an app environment imports the core's torch through links, and its own packages win."""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "apps" / "torch_stack.py"
# find_spec, not import: a bare venv lacks torch's small pure-Python requirements, which pip adds in a real app.
PROBE = """
import importlib.metadata, importlib.util, json, sys, sysconfig
print(json.dumps({"torch": importlib.util.find_spec("torch").origin, "version": importlib.metadata.version("torch"),
    "triton": importlib.util.find_spec("triton").origin, "path": sys.path, "purelib": sysconfig.get_path("purelib")}))
"""


def _link(app: Path, stack: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(app), "--stack", str(stack)], capture_output=True, text=True, check=False
    )


def _probe(app: Path) -> dict:
    out = subprocess.run([str(app / "bin" / "python"), "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_app_environment_finds_the_core_torch_after_its_own_packages(tmp_path: Path) -> None:
    app, stack = tmp_path / "app", tmp_path / "stack"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(app)], check=True)
    assert _link(app, stack).returncode == 0
    seen = _probe(app)
    assert Path(seen["torch"]).is_relative_to(stack.resolve())
    assert (
        Path(seen["torch"]).resolve()
        == Path(importlib.metadata.distribution("torch").locate_file("torch/__init__.py")).resolve()
    )
    assert seen["version"] == importlib.metadata.version("torch")
    assert seen["path"].index(seen["purelib"]) < seen["path"].index(str(stack.resolve()))
    assert Path(seen["triton"]).is_relative_to(stack.resolve())

    # A package the app installs itself shadows the shared one (how the Deploy app keeps its own cuda-bindings).
    own = Path(seen["purelib"]) / "triton"
    own.mkdir()
    (own / "__init__.py").write_text("")
    links = sorted(path.name for path in stack.iterdir())
    assert _link(app, stack).returncode == 0, "linking again must be a no-op, not an error"
    assert sorted(path.name for path in stack.iterdir()) == links
    assert Path(_probe(app)["triton"]) == own / "__init__.py"


def test_missing_app_environment_is_a_one_line_error(tmp_path: Path) -> None:
    result = _link(tmp_path / "absent", tmp_path / "stack")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"torch_stack: {tmp_path / 'absent' / 'lib'}/python3.{sys.version_info.minor}/site-packages does not exist; "
        f"create the environment {tmp_path / 'absent'} first"
    ]


def test_pip_in_the_app_environment_never_removes_the_core_torch(tmp_path: Path) -> None:
    app, stack = tmp_path / "app", tmp_path / "stack"
    subprocess.run([sys.executable, "-m", "venv", str(app)], check=True)
    assert _link(app, stack).returncode == 0
    core_triton = Path(importlib.metadata.distribution("triton").locate_file("triton/__init__.py"))
    result = subprocess.run(
        [str(app / "bin" / "python"), "-m", "pip", "uninstall", "-y", "triton"], capture_output=True, text=True
    )
    assert f"Not uninstalling triton at {stack.resolve()}, outside environment" in result.stdout
    assert core_triton.is_file()
