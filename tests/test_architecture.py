"""The package's architecture holds: layers import only downwards, no module imports one that imports it back,
and reading CT needs neither MONAI nor torch."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import BUNDLE_ROOT

SCRIPTS = BUNDLE_ROOT / "scripts"
# Bottom to top: a module may import from its own layer and the layers before it.
LAYERS = (
    "utils", "ctio", "synthesis", "data", "nets", "evaluation", "training", "clinical", "demo", "command", "scale",
    "score",
)  # fmt: skip


def _module_name(path) -> str:
    parts = path.relative_to(BUNDLE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    """``scripts.*`` modules imported by a file, relative imports resolved, wherever they appear (lazy ones too)."""
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("scripts."))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("scripts."):
                found.add(base)
    return found


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in SCRIPTS.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    for module in _graph():
        if module != "scripts":
            assert module.split(".")[1] in LAYERS, module


def test_layers_import_only_downwards():
    for module, imported in _graph().items():
        if module == "scripts":
            continue
        for target in imported:
            assert _layer(target) <= _layer(module), f"{module} imports {target} from a higher layer"


def test_no_import_cycles():
    graph = _graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    for module in graph:
        assert not reaches(module, module, {module}), f"{module} imports itself back"


def test_reading_and_windowing_import_neither_monai_nor_torch():
    code = (
        "import sys; import scripts.ctio.slices, scripts.ctio.window, scripts.synthesis.demo_data; "
        "print(sorted(m for m in ('monai', 'torch', 'ignite') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
