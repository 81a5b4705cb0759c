"""The package's shape: no import circle, no upward import, small modules (read with `ast`, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "keras_ablate"
MAX_LINES = 400
REASON = "Over 400 lines because"

# The stages, bottom first (docs/ARCHITECTURE.md). A module imports from its own layer and the
# layers below, never from a layer above. An entry names a module or a package (its modules).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "names and rules",
        (
            "keras_ablate.version",
            "keras_ablate.errors",
            "keras_ablate.usercode",
            "keras_ablate.config.levels",
            "keras_ablate.yaml_input",
            "keras_ablate.scoring",
            "keras_ablate.phases",
            "keras_ablate.tuning.objectives",
        ),
    ),
    ("results layout", ("keras_ablate.store",)),
    ("data", ("keras_ablate.data",)),
    ("config", ("keras_ablate.config",)),
    ("models", ("keras_ablate.models",)),
    ("training", ("keras_ablate.training",)),
    (
        "execution",
        (
            "keras_ablate.schedule",
            "keras_ablate.progress",
            "keras_ablate.executors",
            "keras_ablate.runner",
        ),
    ),
    ("analysis", ("keras_ablate.analysis",)),
    ("adaptive seeds", ("keras_ablate.adaptive",)),
    ("tuning", ("keras_ablate.tuning",)),
    ("report", ("keras_ablate.report",)),
    ("claims", ("keras_ablate.claims",)),
    ("export", ("keras_ablate.export",)),
    ("command line", ("keras_ablate.commands", "keras_ablate.cli")),
    # The package itself re-exports the notebook API (lazily), so it sits on top.
    ("notebook API", ("keras_ablate", "keras_ablate.notebook", "keras_ablate.figures")),
]


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, at module level or inside a function (an import
    runs whenever the function does); `if TYPE_CHECKING:` blocks never run and are left out."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(filter(None, (resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from keras_ablate.config import tuning` imports the submodule config.tuning.
                target = f"{base}.{alias.name}"
                found.add(target if target in known else resolve(base))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(None)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or through others (Tarjan's strongly
    connected components with more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def layer_of(name: str) -> int:
    """The index in LAYERS of the most specific entry that names `name` or a package holding it."""
    best, depth = None, -1
    for i, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            holds = name == entry or (entry != "keras_ablate" and name.startswith(entry + "."))
            if holds and entry.count(".") > depth:
                best, depth = i, entry.count(".")
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)")
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]


def test_no_import_circles_counting_imports_inside_functions_too():
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the graph was really read
    assert circles(graph) == []


def test_no_module_imports_a_stage_above_its_own():
    assert upward_imports(import_graph()) == []


def test_a_module_imports_its_siblings_never_its_own_package():
    # `from keras_ablate.config import RunSpec` inside config/ would run config/__init__.py,
    # which imports every submodule: the way circles start. The root package is the notebook API,
    # which no module of the package imports.
    graph = import_graph()
    bad = [
        f"{name} imports {target}"
        for name, targets in graph.items()
        for target in targets
        if target != "keras_ablate" and name.startswith(target + ".")
    ]
    assert bad == []


def test_levels_imports_nothing_of_the_project_but_errors():
    assert import_graph()["keras_ablate.config.levels"] <= {"keras_ablate.errors"}


def test_the_circle_finder_and_the_layers_catch_what_they_should():
    # A hand-made graph: the checks above can fail.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    upward = upward_imports({"keras_ablate.config.schema": {"keras_ablate.analysis.tables"}})
    assert upward == [
        "keras_ablate.config.schema (config) imports keras_ablate.analysis.tables (analysis)"
    ]
    with pytest.raises(AssertionError, match="no layer"):
        layer_of("elsewhere.module")


def test_modules_stay_under_400_lines_or_say_why_at_the_top():
    too_long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and REASON not in docstring:
            too_long.append(f"{name}: {lines} lines")
    assert too_long == [], f"split these or write '{REASON} ...' in their docstring"


@pytest.mark.parametrize("argv", [["--help"], ["status", "{folder}"]])
def test_help_and_status_import_no_tensorflow(argv, tmp_path):
    import subprocess
    import sys

    (tmp_path / "runs").mkdir()
    argv = [a.format(folder=tmp_path) for a in argv]
    code = (
        "import sys\nfrom keras_ablate.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
