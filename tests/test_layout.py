"""The layout: layers that import downwards only, and parts of a readable size.

``docs/architecture.md`` draws the same layers; the test checks that it names
every module, so the page and the code cannot drift apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "gala_deeppotential"

# Each module's layer: at its top a module imports only from lower layers.
# Methods that hand work to a higher layer (FlowEnsemble.fit to the training
# loop, DeepPotential's exports, the pipeline's distributed path and plots)
# import inside the method.
LAYERS = {
    "runtime": 0,
    "io": 0,
    "options": 0,
    "directions": 0,
    "healpix": 0,
    "tables": 0,
    "radial_map": 0,
    "ball_map": 0,
    "continuity": 0,
    "splines": 0,
    "summary": 1,
    "phasespace": 1,
    "standardizer": 1,
    "flows": 1,
    "cbe": 1,
    "nn": 1,
    "cylspline": 1,
    "df": 2,
    "sky": 2,
    "truncation": 2,
    "likelihood": 2,
    "selection": 3,
    "sightlines": 3,
    "deconvolution": 4,
    "training_options": 3,
    "training": 4,
    "phi_training": 2,
    "potential": 3,
    "virial": 4,
    "gala_potential": 4,
    "distributed": 5,
    "export": 5,
    "mocks": 5,
    "compare": 5,
    "meridional": 6,
    "stationarity": 5,
    "uncertainty": 5,
    "result": 6,
    "pipeline": 7,
    "demo": 8,
    "local": 8,
    "cli": 9,
}
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 300


# Subpackages whose files share one layer: their files import each other
# freely and the rest of the package by layer.
SUBPACKAGES = ("mocks",)


def _modules() -> list[Path]:
    top = [p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    inner = [p for name in SUBPACKAGES for p in (PACKAGE / name).glob("*.py")]
    return sorted(top + inner)


def _layer_name(path: Path) -> str:
    """The entry of LAYERS a file belongs to: its module or its subpackage."""
    return path.parent.name if path.parent != PACKAGE else path.stem


def _top_level_imports(tree: ast.Module, depth: int) -> set[str]:
    """Package modules imported at the module's top (not inside functions).

    ``depth`` is the relative-import level that reaches the package root:
    1 for a top-level module, 2 inside a subpackage.
    """
    names = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks
            continue
        if isinstance(node, ast.ImportFrom) and node.level == depth:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
    return names


def _docstring_lines(node: ast.AST) -> int:
    body = getattr(node, "body", [])
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno - first.lineno + 1
    return 0


def _size(node: ast.AST) -> int:
    """Lines of a function or class, without the docstrings inside it."""
    docs = sum(
        _docstring_lines(child)
        for child in ast.walk(node)
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    )
    return node.end_lineno - node.lineno + 1 - docs


def test_every_module_has_a_layer():
    assert sorted({_layer_name(p) for p in _modules()}) == sorted(LAYERS)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_import_only_lower_layers(path):
    module = _layer_name(path)
    depth = 1 if path.parent == PACKAGE else 2
    tree = ast.parse(path.read_text(encoding="utf-8"))
    upward = {
        name
        for name in _top_level_imports(tree, depth)
        if LAYERS[name] >= LAYERS[module]
    }
    assert not upward, f"{path.name} imports {sorted(upward)} from its layer or above"


def test_parts_have_a_readable_size():
    too_big = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                limit = MAX_FUNCTION_LINES
            elif isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            else:
                continue
            if _size(node) > limit:
                too_big.append(f"{path.name}: {node.name} {_size(node)} > {limit}")
    assert not too_big, too_big


def test_the_architecture_page_names_every_module():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [m for m in LAYERS if f"`{m}`" not in page and f"{m}.py" not in page]
    assert not missing, missing
