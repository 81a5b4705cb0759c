"""The user's own code named in an experiment file ("module:function"): found, checked, hashed, imported.

A module is looked up in the experiment file's folder first (`module.py`, or
`module/__init__.py`; a dotted name as sub-folders), then on `sys.path`. `find` and
`check_defined` read the module's source with `ast` and import nothing (so `plan` stays free of
TensorFlow); `load_function` imports it. Every failure is a UserCodeError whose message names
the module's file and says where the lookup started; callers prefix the experiment file's line.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from keras_ablate.errors import UserError, suggest

_REF = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")


class UserCodeError(UserError):
    """The user's module or function cannot be found, imported or used as asked."""


def is_ref(text: object) -> bool:
    """Whether a name is a "module:function" reference (built-in names never hold a colon)."""
    return isinstance(text, str) and ":" in text


def split_ref(text: str) -> tuple[str, str]:
    """("module", "function") of "module:function", or a UserCodeError saying the grammar."""
    match = _REF.match(text.strip())
    if not match:
        raise UserCodeError(
            f"'{text}' is not MODULE:FUNCTION (e.g. 'my_models:build_bilstm': a Python module "
            "name, dots for packages, a colon, then a function name)"
        )
    return match.group(1), match.group(2)


def where_searched(base_dir: str | Path | None) -> str:
    if base_dir is None:
        return "looked up on sys.path"
    return f"looked up relative to the experiment file's folder {base_dir}, then on sys.path"


@dataclass(frozen=True)
class Located:
    """A module found on disk: its name, the file holding its source, and that file's hash."""

    module: str
    function: str
    path: Path
    sha256: str
    # The folder to put first on sys.path when importing (the experiment file's folder), or None.
    root: Path | None


def find(ref: str, base_dir: str | Path | None) -> Located:
    """Find the module of `ref` without importing it (a dotted name may import its parents)."""
    module, function = split_ref(ref)
    relative = Path(*module.split("."))
    if base_dir is not None:
        root = Path(base_dir)
        for candidate in (root / relative.with_suffix(".py"), root / relative / "__init__.py"):
            if candidate.is_file():
                return Located(module, function, candidate, sha256_file(candidate), root)
    try:
        # A top-level name is searched on sys.path itself: importlib.util.find_spec would return
        # a module of that name imported earlier from another folder (sys.modules).
        spec = (
            importlib.util.find_spec(module)
            if "." in module
            else importlib.machinery.PathFinder.find_spec(module)
        )
    except (ImportError, ValueError) as exc:
        spec, why = None, f" ({type(exc).__name__}: {exc})"
    else:
        why = ""
    origin = getattr(spec, "origin", None) if spec is not None else None
    if origin is None or not Path(origin).is_file() or not origin.endswith(".py"):
        raise UserCodeError(
            f"module '{module}' of '{ref}' not found{why}: no {relative}.py or "
            f"{relative}/__init__.py ({where_searched(base_dir)})"
        )
    return Located(module, function, Path(origin), sha256_file(Path(origin)), None)


def check_defined(ref: str, base_dir: str | Path | None) -> Located:
    """Find the module and check, by reading its source with `ast`, that it defines the function.

    A top-level `def`, class, assignment or import of that name counts. Nothing is imported.
    """
    found = find(ref, base_dir)
    try:
        tree = ast.parse(found.path.read_bytes(), filename=str(found.path))
    except SyntaxError as exc:
        raise UserCodeError(
            f"{found.path}:{exc.lineno}: module '{found.module}' of '{ref}' does not parse: "
            f"{exc.msg} ({where_searched(base_dir)})"
        ) from None
    names = top_level_names(tree)
    if found.function not in names:
        public = sorted(n for n in names if not n.startswith("_"))
        raise UserCodeError(
            f"{found.path}: module '{found.module}' defines no '{found.function}'"
            f"{suggest(found.function, public)}; it defines: {', '.join(public) or 'nothing public'} "
            f"(checked without importing it; {where_searched(base_dir)})"
        )
    return found


def top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


_LOADED: dict[tuple[str, str], object] = {}


def load_function(ref: str, base_dir: str | Path | None):
    """Import the module of `ref` (once per source version and process) and return the function."""
    found = find(ref, base_dir)
    key = (str(found.path), found.sha256)
    if key not in _LOADED:
        _LOADED[key] = _import(found, ref, base_dir)
    module = _LOADED[key]
    function = getattr(module, found.function, None)
    if function is None:
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise UserCodeError(
            f"{found.path}: module '{found.module}' has no '{found.function}'"
            f"{suggest(found.function, public)} ({where_searched(base_dir)})"
        )
    if not callable(function):
        raise UserCodeError(f"{found.path}: '{ref}' is a {type(function).__name__}, not a function")
    return function


def _import(found: Located, ref: str, base_dir):
    # The experiment folder goes first on sys.path while importing, so the user's module can
    # import its siblings; a module found on sys.path is imported as usual.
    added = found.root is not None and str(found.root) not in sys.path
    if added:
        sys.path.insert(0, str(found.root))
    try:
        if "." in found.module and found.root is None:
            return importlib.import_module(found.module)  # a package's module, imported as usual
        # From the file found, not sys.modules: a module of the same name from another folder
        # may have been imported before (another experiment in the same process).
        locations = [str(found.path.parent)] if found.path.name == "__init__.py" else None
        spec = importlib.util.spec_from_file_location(
            found.module, found.path, submodule_search_locations=locations
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[found.module] = module
        spec.loader.exec_module(module)
        return module
    except Exception as exc:
        sys.modules.pop(found.module, None)
        raise UserCodeError(
            f"{found.path}: importing module '{found.module}' of '{ref}' failed: "
            f"{type(exc).__name__}: {exc}{_user_frame(exc, found.path)} ({where_searched(base_dir)})"
        ) from exc
    finally:
        if added:
            sys.path.remove(str(found.root))


def _user_frame(exc: BaseException, path: Path) -> str:
    """' (line N)' of the deepest traceback frame in the user's file, or ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" (line {frames[-1].lineno})" if frames else ""


def call_error(ref: str, exc: BaseException, base_dir) -> UserCodeError:
    """A UserCodeError for an exception the user's function raised when called."""
    try:
        path = find(ref, base_dir).path
    except UserCodeError:
        path = None
    frame = _user_frame(exc, path) if path else ""
    return UserCodeError(
        f"{path or ref}: calling '{ref}' raised {type(exc).__name__}: {exc}{frame}"
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
