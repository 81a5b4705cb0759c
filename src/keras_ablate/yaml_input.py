"""Read a user's YAML file safely: bounded size, depth and alias expansion, no duplicate keys, lines kept.

`yaml.safe_load` forbids arbitrary objects but not the rest: a few hundred bytes of nested
aliases expand to gigabytes once anything walks the result, a repeated key silently keeps
only its last block, and a FIFO or a binary given by mistake is read to the end. Everything
here raises ConfigError (exit 2) naming the file, the line and the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from keras_ablate.errors import ConfigError

# An experiment file is a few kilobytes (the longest shipped one is 2.2 kB). These bounds are
# orders of magnitude above any real file and low enough that a hostile one fails in well
# under a second: the events are counted in C before a single Python node is built.
MAX_BYTES = 1 << 20
MAX_NODES = 100_000  # values after every alias is expanded
MAX_DEPTH = 32  # nesting of mappings and lists, aliases included

# libyaml when PyYAML was built with it (about 20x faster); the same resolver and constructor.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_text(path: str | Path) -> str:
    """The text of a YAML file given on the command line, or a ConfigError saying why not."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give an experiment YAML file")
    if not path.is_file():
        # A FIFO or a device would be read forever (/dev/zero) or block (a pipe).
        raise ConfigError(f"{path}: not a regular file; give an experiment YAML file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_BYTES // 1024} KiB; an experiment file is a few kilobytes "
            "(is this the right file?)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (bytes {raw[exc.start : exc.start + 4]!r} at offset "
            f"{exc.start}); save the experiment file as UTF-8"
        ) from None


def load(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML text within the bounds above.

    Returns:
        (data, lines): the document as Python values, and 1-based line numbers of every key
        path (('grid', 'activation', 2) -> 7), for errors that say where.

    Raises:
        ConfigError: syntax errors, duplicate keys, recursive aliases, or a document larger
            or deeper than the bounds, with file, line and key path.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES // 1024} KiB")
    try:
        _check_events(text, source)
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, source) from None
    except UnicodeError as exc:  # libyaml refuses lone surrogates before its reader sees them
        raise ConfigError(f"{source}: not valid text: {exc.reason}") from None
    if root is None:
        return None, {}
    _check_expansion(root, source)
    lines = _walk(root, source)
    try:
        data = SafeConstructor().construct_document(root)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, source) from None
    return data, lines


def _syntax_error(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{source}:{mark.line + 1}:{mark.column + 1}"
    elif isinstance(exc, yaml.reader.ReaderError):
        where = f"{source}:{text.count(chr(10), 0, exc.position) + 1}"
    else:
        where = source
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"character {exc.character!r} is not allowed in YAML ({exc.reason})"
    else:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigError(f"{where}: YAML syntax error: {problem}")


def _check_events(text: str, source: str) -> None:
    """Bound the written nesting and node count from the event stream, before any node exists."""
    depth = count = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"{source}:{event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                    "deep; an experiment file needs a handful"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            count += 1
            if count > MAX_NODES:
                raise ConfigError(
                    f"{source}:{event.start_mark.line + 1}: more than {MAX_NODES} values; "
                    "an experiment file needs a few hundred"
                )


def _children(node: Node) -> Iterator[tuple[Any, Node]]:
    """(key, child) pairs: mapping values under their key's text, list items under their index."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield (key.value if isinstance(key, ScalarNode) else "?"), key
            yield (key.value if isinstance(key, ScalarNode) else "?"), value
    elif isinstance(node, SequenceNode):
        yield from enumerate(node.value)


def _check_expansion(root: Node, source: str) -> None:
    """Reject recursive aliases, and documents whose aliases expand beyond MAX_NODES / MAX_DEPTH.

    Sizes are counted once per distinct node (aliases share their node), so a bomb is
    measured without being expanded.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    refs: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        kids = [child for _, child in _children(node)]
        if finished:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            # Nesting counts mappings and lists, as _check_events does; a scalar adds none.
            depth[key] = isinstance(node, MappingNode | SequenceNode) + max(
                (depth[id(c)] for c in kids), default=0
            )
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in kids:
            refs[id(child)] = refs.get(id(child), 0) + 1
            if id(child) in on_path:
                raise ConfigError(
                    f"{source}:{child.start_mark.line + 1}: a YAML alias refers to a value that "
                    "contains it (a recursive alias); write the values out"
                )
            if id(child) not in size:
                stack.append((child, False))
    for measure, limit, what in ((size, MAX_NODES, "values"), (depth, MAX_DEPTH, "levels deep")):
        if measure[id(root)] <= limit:
            continue
        # Walk down the heaviest branch to the value that holds the aliases.
        node, path = root, ()
        while True:
            heavy = max(_children(node), key=lambda kc: measure[id(kc[1])], default=None)
            if heavy is None or measure[id(heavy[1])] <= limit or refs.get(id(heavy[1]), 0) > 1:
                break
            path += (heavy[0],)
            node = heavy[1]
        where = f"{format_path(path)}: " if path else ""
        raise ConfigError(
            f"{source}:{node.start_mark.line + 1}: {where}YAML aliases (*name) expand this to "
            f"{measure[id(node)]:,} {what}; an experiment file allows {limit:,}: write the values out"
        )


def format_path(path: tuple) -> str:
    """('grid', 'activation', 2) -> 'grid.activation[2]', the way every located error names a key."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _walk(root: Node, source: str) -> dict[tuple, int]:
    """Line of every key path, each node entered once; duplicate keys are an error."""
    lines: dict[tuple, int] = {(): root.start_mark.line + 1}
    entered: set[int] = set()
    stack: list[tuple[Node, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in entered:
            continue  # an alias: its values were located where they were written
        entered.add(id(node))
        if isinstance(node, MappingNode):
            _check_duplicates(node, path, source)
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    continue
                name = key.value if isinstance(key, ScalarNode) else "?"
                lines.setdefault(path + (name,), key.start_mark.line + 1)
                stack.append((value, path + (name,)))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(path + (i,), item.start_mark.line + 1)
                stack.append((item, path + (i,)))
    return lines


def _check_duplicates(node: MappingNode, path: tuple, source: str) -> None:
    seen: dict[tuple, int] = {}
    for key, _ in node.value:
        if key.tag == _MERGE_TAG or not isinstance(key, ScalarNode):
            continue
        line = key.start_mark.line + 1
        ident = (key.tag, key.value)
        if ident in seen:
            where = format_path((*path, key.value))
            raise ConfigError(
                f"{source}:{line}: {where}: duplicate key '{key.value}' (first on line "
                f"{seen[ident]}); YAML would silently keep only the last one: write each key once"
            )
        seen[ident] = line
