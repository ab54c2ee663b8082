"""Let an app environment (.venv-deploy, .venv-label) use the core .venv's torch instead of a copy of it.

Run with the core environment's Python: ``.venv/bin/python apps/torch_stack.py .venv-deploy [--stack DIR]``.

The only torch 2.14.1 on this machine's wheel index is the CUDA build: torch, triton and the NVIDIA libraries are
about 5.3 GB in every environment that installs them, so three environments would hold three copies. This links the
core's copy (the distributions named by ``SHARED_NAMES`` and ``SHARED_PREFIXES``) into ``.venv/torch-stack`` and
puts that folder on the app environment's path with a ``.pth`` file. Python appends ``.pth`` folders after the
environment's own site-packages, so a package the app installs itself wins, and pip sees torch 2.14.1 as installed,
so an app that pins the core's torch installs nothing more. Because the folder lies outside the app environment, pip
never uninstalls from it: an app pinning another torch gets its own copy, and the core's stays whole.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import sysconfig
from pathlib import Path

SHARED_NAMES = ("torch", "torchvision", "triton")
SHARED_PREFIXES = ("nvidia-", "cuda-")
PTH_NAME = "tfkt_torch_stack.pth"


def shared_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions that make up the CUDA torch stack (torch, torchvision, triton, NVIDIA, CUDA)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in SHARED_NAMES or name.startswith(SHARED_PREFIXES):
            found[name] = dist
    missing = [name for name in SHARED_NAMES if name not in found]
    if missing:
        raise SystemExit(f"torch_stack: {', '.join(missing)} not installed in {sys.prefix}; run `make venv` first")
    return list(found.values())


def top_level_entries(dist: importlib.metadata.Distribution) -> set[str]:
    """First path parts of a distribution's files inside site-packages (packages, modules, its .dist-info)."""
    return {file.parts[0] for file in dist.files or () if file.parts[0] != ".."}


def link_stack(site_packages: Path, stack: Path) -> int:
    """Make ``stack`` hold one symlink per top-level entry of the shared distributions; returns their number."""
    stack.mkdir(exist_ok=True)
    entries = set().union(*(top_level_entries(dist) for dist in shared_distributions()))
    for entry in sorted(entries):
        link, target = stack / entry, site_packages / entry
        if not target.exists():
            raise SystemExit(f"torch_stack: {target} is listed by an installed distribution but missing")
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return len(entries)


def app_purelib(app_venv: Path) -> Path:
    """The site-packages folder of an app environment built by ``python -m venv`` with this same Python."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = app_venv / "lib" / version / "site-packages"
    if not purelib.is_dir():
        raise SystemExit(f"torch_stack: {purelib} does not exist; create the environment {app_venv} first")
    return purelib


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app_venv", type=Path, help="the app environment, made by `python -m venv`")
    parser.add_argument("--stack", type=Path, default=Path(sys.prefix) / "torch-stack", help="folder of the links")
    args = parser.parse_args(argv)
    site_packages = Path(sysconfig.get_path("purelib"))
    stack = args.stack.resolve()
    count = link_stack(site_packages, stack)
    pth = app_purelib(args.app_venv) / PTH_NAME
    pth.write_text(f"{stack}\n")
    print(f"torch_stack: {count} entries of {site_packages} linked in {stack}, on the path of {pth.parent}")


if __name__ == "__main__":
    main()
