"""User files (csv, tsv, jsonl): read and checked record by record, with the line of every problem."""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path

from keras_ablate.data.assemble import build
from keras_ablate.data.base import Dataset
from keras_ablate.data.text_options import FileOptions
from keras_ablate.errors import DataError, suggest


def existing_file(path: str, what: str, base_dir: str | Path | None = None) -> Path:
    """The file a path option names: relative paths are resolved against the experiment file's
    folder `base_dir` (or the working directory when there is none, as for a direct call)."""
    given = Path(path).expanduser()
    resolved = given if given.is_absolute() else Path(base_dir or Path.cwd()) / given
    how = (
        ""
        if given.is_absolute()
        else f" (resolved relative to the experiment file's folder {base_dir})"
        if base_dir is not None
        else f" (resolved relative to the working directory {Path.cwd()})"
    )
    if resolved.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file{how}")
    if not resolved.is_file():
        raise DataError(f"{what} {path} not found: no file {resolved}{how}")
    return resolved


def user_files(opts: FileOptions, base_dir: str | Path | None = None) -> dict[str, Path]:
    """The files a user dataset reads, by option: `path`, and `val_path` / `test_path` when set.

    Relative paths are resolved against the experiment file's folder `base_dir` (the working
    directory without one), all three alike (existing_file)."""
    out = {"path": existing_file(opts.path, "data file", base_dir)}
    for key in ("val_path", "test_path"):
        if getattr(opts, key) is not None:
            out[key] = existing_file(getattr(opts, key), f"{key} file", base_dir)
    return out


def read_user_records(fmt: str, opts: FileOptions, files: dict[str, Path]):
    """(texts, labels, val, test) of a user file; val and test are (texts, labels) of val_path
    and test_path, or None. Their columns are the training file's (text_column, label_column)
    and every label must occur in training: an error names the file and the line."""
    texts, labels, _ = read_records(fmt, files["path"], opts)
    known = set(labels)
    extra = {}
    for key in ("val_path", "test_path"):
        if key not in files:
            extra[key] = None
            continue
        more_texts, more_labels, more_lines = read_records(fmt, files[key], opts)
        for label, line in zip(more_labels, more_lines, strict=True):
            if label not in known:
                raise DataError(
                    f"{files[key]} line {line}: label '{label}' never occurs in {files['path']}; "
                    f"training labels: {', '.join(sorted(known))}"
                )
        extra[key] = (more_texts, more_labels)
    return texts, labels, extra["val_path"], extra["test_path"]


def build_user_file(fmt: str, opts: FileOptions, files: dict[str, Path]) -> Dataset:
    texts, labels, val, test = read_user_records(fmt, opts, files)
    meta = {"source": str(files["path"]), "format": fmt}
    for key, what in (("val_path", "val_source"), ("test_path", "test_source")):
        if key in files:
            meta[what] = str(files[key])
    return build(
        fmt,
        opts,
        str(files["path"]),
        texts,
        labels,
        val=val,
        test=test,
        meta=meta,
        column=opts.label_column,
    )


def read_records(fmt: str, path: Path, opts: FileOptions) -> tuple[list[str], list[str], list[int]]:
    """Parse one file into texts, labels (as strings) and the line each record starts on."""
    raw = path.read_bytes()
    # utf-8-sig drops the byte-order mark spreadsheet programs put in front of the header.
    encoding = "utf-8-sig" if codecs.lookup(opts.encoding).name == "utf-8" else opts.encoding
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.end]
        raise DataError(
            f"{path} line {line}: bytes {bad!r} are not valid {opts.encoding}; set the encoding option "
            "(for example latin-1, cp1252, gb18030) or fix the file"
        ) from None
    if not text.strip():
        raise DataError(f"{path} is empty")
    rows = (
        _jsonl_rows(path, text, opts) if fmt == "jsonl" else _delimited_rows(fmt, path, text, opts)
    )
    if not rows:
        raise DataError(f"{path} has no data rows")
    texts, labels, lines = [], [], []
    for line, value, label in rows:
        if isinstance(label, bool):
            label = "true" if label else "false"
        elif isinstance(label, float) and label.is_integer():
            label = int(label)
        if not isinstance(label, (str, int)) or not str(label).strip():
            raise DataError(
                f"{path} line {line}: label {label!r} in '{opts.label_column}' must be a non-empty string or integer"
            )
        if not isinstance(value, str):
            raise DataError(
                f"{path} line {line}: text {value!r} in '{opts.text_column}' must be a string"
            )
        texts.append(value)
        labels.append(str(label).strip())
        lines.append(line)
    return texts, labels, lines


def _missing_column(path: Path, column: str, option: str, found: list[str]) -> DataError:
    return DataError(
        f"{path}: no column '{column}'{suggest(column, found)}; columns found: {', '.join(found)} "
        f"(set the {option} option)"
    )


def _delimited_rows(fmt: str, path: Path, text: str, opts: FileOptions) -> list[tuple]:
    # TSV files rarely quote, and a lone '"' in a review must not swallow the following lines.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    # Long documents exceed csv's 128 KiB default field limit; the limit is process-wide but harmless.
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=opts.delimiter, quoting=quoting)
    rows, header, end = [], None, 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if header is None:
                header = [name.strip() for name in record]
                for column, option in (
                    (opts.text_column, "text_column"),
                    (opts.label_column, "label_column"),
                ):
                    if column not in header:
                        raise _missing_column(path, column, option, header)
                text_at, label_at = header.index(opts.text_column), header.index(opts.label_column)
                header_line = start
                continue
            if len(record) != len(header):
                raise DataError(
                    f"{path} line {start}: {len(record)} fields, but the header (line {header_line}) has "
                    f"{len(header)} ({', '.join(header)}); quote fields that contain {opts.delimiter!r}"
                )
            rows.append((start, record[text_at], record[label_at]))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    return rows


def _jsonl_rows(path: Path, text: str, opts: FileOptions) -> list[tuple]:
    rows = []
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and similar separators.
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} line {line}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path} line {line}: expected a JSON object per line, got {type(record).__name__}"
            )
        for column, option in (
            (opts.text_column, "text_column"),
            (opts.label_column, "label_column"),
        ):
            if column not in record:
                error = _missing_column(path, column, option, list(record))
                if rows:  # Past the first record, the line number says which record lacks it.
                    error = DataError(f"{error} (line {line})")
                raise error
        rows.append((line, record[opts.text_column], record[opts.label_column]))
    return rows
