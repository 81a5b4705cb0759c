"""Property: any malformed experiment file gets exit 2, one message naming the file, and no writes.

Hypothesis starts from a valid file and breaks it: unknown or misspelled keys, wrong types and
values, missing sections, YAML structure (duplicates, aliases, nesting, tags, syntax),
encodings and control bytes, and sizes. Each case goes through the CLI in this process.
"""

from __future__ import annotations

import contextlib
import copy
import io

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_ablate.cli import main
from keras_ablate.config import SETTING_KEYS

VALID = {
    "name": "prop",
    "description": "generated",
    "dataset": {"name": "ngram", "options": {"n_train": 64, "n_val": 16, "seq_len": 8}},
    "base": {"epochs": 1, "units": 4},
    "grid": {"architecture": ["cnn", "lstm"], "clip": ["none", "norm:1.0"]},
    "seeds": [0, 1],
    "exclude": [{"architecture": "cnn", "clip": "norm:1.0"}],
    "reference": {"architecture": "cnn"},
    "analysis": {"metric": "val/accuracy", "target_fraction": 0.9},
    "resources": {"num_cpus": 1},
}
EXAMPLES = 400  # malformed files generated per run of this test (at least 300 must be tried)

# Keys that are valid where they stand; a generated key outside these is an error.
KNOWN = {
    (): {*VALID, "design", "tune", "base_from", "claim"},
    ("dataset",): {"name", "options"},
    ("dataset", "options"): {"n_train", "n_val", "seed", "seq_len", "vocab_size", "ngram_len"},
    ("analysis",): {"metric", "target_fraction", "target"},
    ("resources",): {"num_cpus", "num_gpus"},
    ("base",): set(SETTING_KEYS),
    ("grid",): set(SETTING_KEYS),
}

# (path, value): a value that is wrong at that path whatever else the file says.
BAD_VALUES = [
    (("name",), []),
    (("name",), {"a": 1}),
    (("name",), ""),
    (("name",), None),
    (("dataset",), "ngram"),
    (("dataset", "name"), "ngrm"),
    (("dataset", "name"), 5),
    (("dataset", "options"), [1, 2]),
    (("dataset", "options", "seq_len"), 2),
    (("dataset", "options", "seq_len"), "long"),
    (("dataset", "options", "n_train"), -5),
    (("dataset", "options", "seed"), -1),
    (("base",), ["units", 4]),
    (("base", "units"), 0),
    (("base", "units"), "many"),
    (("base", "units"), [4]),
    (("base", "units"), 1.5),
    (("base", "learning_rate"), 0),
    (("base", "learning_rate"), "fast"),
    (("base", "dropout"), 1.0),
    (("base", "clip"), "norm:-1"),
    (("base", "clip"), "nrom:1"),
    (("base", "clip"), 3),
    (("base", "activation"), "rleu"),
    (("base", "epochs"), 0),
    (("base", "batch_size"), 0),
    (("base", "kernel_sizes"), []),
    (("base", "kernel_sizes"), [0]),
    (("base", "forget_bias"), 0.5),
    (("base", "init"), "spectral_radius:-1"),
    (("base", "kernel_init"), "normal:inf"),
    (("base", "optimizer"), "adm"),
    (("base", "pooling"), "min"),
    (("base", "jit_compile"), "maybe"),
    (("grid",), ["architecture"]),
    (("grid", "architecture"), "cnn"),
    (("grid", "architecture"), []),
    (("grid", "architecture"), ["cnn", "cnn"]),
    (("grid", "architecture"), ["lstn"]),
    (("grid", "clip"), ["none", "norm:1", "norm:1.0"]),
    (("grid", "dataset.seq_lenn"), [5]),
    (("grid", "dataset.seq_len"), [2]),
    (("seeds",), [-1]),
    (("seeds",), [2**32]),
    (("seeds",), [0, 0]),
    (("seeds",), "x"),
    (("seeds",), -1),
    (("seeds",), 0),
    (("seeds",), 10**9),
    (("seeds",), [1.5]),
    (("seeds",), {}),
    (("seeds",), 1e23),
    (("seeds",), []),
    (("exclude",), {}),
    (("exclude",), [{}]),
    (("exclude",), [5]),
    (("exclude",), [{"nonaxis": 1}]),
    (("exclude",), [{"architecture": "lstn"}]),
    (("exclude",), [{"architecture": "cnn"}, {"architecture": "lstm"}]),
    (("design",), "random"),
    (("reference",), {"activation": "relu"}),
    (("reference",), {"architecture": "gru"}),
    (("reference",), 5),
    (("analysis",), []),
    (("analysis", "target_fraction"), 0),
    (("analysis", "target_fraction"), 2),
    (("resources", "num_cpus"), 0),
    (("resources", "num_gpus"), -1),
    (("tune",), {"tuner": "grd", "space": {"units": [4, 8]}}),
    (("tune",), {"space": {}}),
    (("tune",), {"space": {"architecture": ["cnn"]}}),
    (("tune",), {"space": {"units": {"type": "int", "min": 8, "max": 4}}}),
    (("tune",), {"objective": "accuracy?", "space": {"units": [4, 8]}}),
    (("base_from",), "no/such/tuning/folder"),
    (("claim",), {}),
    (("claim",), {"id": 0, "statement": "x", "rule": {}}),
]

# Snippets that break the YAML itself, appended to a valid dump.
BROKEN_YAML = [
    "extra: [1, 2\n",
    "a: b: c\n",
    "\t- x\n",
    "{unclosed\n",
    "- a list after a mapping\n",
    "extra: 'unterminated\n",
    "extra: *undefined_alias\n",
    "extra: !!python/object/apply:os.system ['echo hacked']\n",
    "extra: !!binary not-base64?\n",
    "extra: !custom_tag 1\n",
    "---\nname: second document\n",
    "? [1, 2]\n: unhashable key\n",
    "extra: &x [*x]\n",
    "extra: " + "[" * 40 + "]" * 40 + "\n",
]

identifiers = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True)


def _set(doc: dict, path: tuple, value) -> None:
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def unknown_key(draw):
    section = draw(st.sampled_from(sorted(KNOWN)))
    key = draw(identifiers.filter(lambda k: k not in KNOWN[section]))
    value = [1] if section == ("grid",) else draw(st.sampled_from([1, "x", [1], {"a": 1}]))
    return ("unknown key", section + (key,), value)


@st.composite
def misspelled_key(draw):
    section = draw(st.sampled_from([s for s in sorted(KNOWN) if s != ("grid",)]))
    key = draw(st.sampled_from(sorted(KNOWN[section])))
    cut = draw(st.integers(0, len(key) - 1))
    typo = key[:cut] + key[cut + 1 :] + draw(st.sampled_from(["", "s", "_"]))
    if typo in KNOWN[section] or not typo:
        typo += "zz"
    return ("unknown key", section + (typo,), draw(st.sampled_from([1, "x"])))


structured = st.one_of(
    unknown_key(),
    misspelled_key(),
    st.sampled_from(BAD_VALUES).map(lambda pv: ("bad value", *pv)),
    st.sampled_from(["name", "dataset"]).map(lambda k: ("missing", (k,), None)),
)


@st.composite
def malformed(draw) -> tuple[str, bytes]:
    """(what was broken, the file's bytes)."""
    doc = copy.deepcopy(VALID)
    what = []
    kind = draw(st.sampled_from(["structure", "yaml", "encoding", "size", "bytes", "shape"]))
    if kind == "structure":
        for change, path, value in draw(st.lists(structured, min_size=1, max_size=3)):
            what.append(f"{change} {'.'.join(map(str, path))}={value!r}"[:80])
            if change == "missing":
                doc.pop(path[0], None)
            else:
                _set(doc, path, value)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if kind == "yaml":
        choice = draw(st.sampled_from(["snippet", "duplicate", "bomb", "not-a-mapping"]))
        what.append(choice)
        if choice == "snippet":
            text += draw(st.sampled_from(BROKEN_YAML))
        elif choice == "duplicate":
            key = draw(st.sampled_from(sorted(VALID)))
            text += yaml.safe_dump({key: VALID[key]})
        elif choice == "bomb":
            levels = draw(st.integers(6, 10))
            key = draw(st.sampled_from(["exclude", "description", "base", "bomb"]))
            text += f"{key}:\n  - &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
            for i in range(1, levels):
                text += f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
        else:
            text = draw(st.sampled_from(["", "# only a comment\n", "- a\n- b\n", "42\n", "~\n"]))
    raw = text.encode("utf-8")
    if kind == "encoding":
        encoding = draw(st.sampled_from(["latin-1", "cp1252", "utf-16", "utf-32", "utf-8-sig+ff"]))
        accents = draw(st.text(alphabet="éüßçñøåÆ", min_size=1, max_size=6))
        what.append(f"{encoding} {accents}")
        text = text.replace("description: generated", f"description: {accents}")
        raw = (
            text.encode("utf-8-sig") + b"\xff"
            if encoding == "utf-8-sig+ff"
            else text.encode(encoding)
        )
    elif kind == "bytes":
        bad = draw(st.sampled_from([b"\x00", b"\x01", b"\x07", b"\x1b", b"\xff", b"\xc0\xaf"]))
        at = draw(st.integers(0, len(raw)))
        what.append(f"{bad!r} at {at}")
        raw = raw[:at] + bad + raw[at:]
    elif kind == "size":
        choice = draw(st.sampled_from(["huge-file", "many-values", "huge-grid", "many-seeds"]))
        what.append(choice)
        if choice == "huge-file":
            raw += b"# " + b"x" * ((1 << 20) + draw(st.integers(0, 1000))) + b"\n"
        elif choice == "many-values":
            raw += b"bulk: [" + b"0, " * draw(st.integers(100_001, 120_000)) + b"]\n"
        elif choice == "huge-grid":
            n = draw(st.integers(400, 600))
            _set(doc, ("grid", "units"), list(range(1, n)))
            _set(doc, ("grid", "epochs"), list(range(1, n)))
            raw = yaml.safe_dump(doc, sort_keys=False).encode()
        else:
            raw = yaml.safe_dump({**doc, "seeds": draw(st.integers(10**5, 10**12))}).encode()
    elif kind == "shape":
        raw = draw(st.binary(min_size=0, max_size=300))
        what.append(f"random bytes {raw[:20]!r}")
    return "; ".join(what) or kind, raw


def test_malformed_files_exit_2_with_one_message_naming_the_file(tmp_path):
    path = tmp_path / "experiment.yaml"
    results = tmp_path / "results"
    tried = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=malformed(), command=st.sampled_from(["plan", "run", "status", "report"]))
    def check(case, command):
        what, raw = case
        path.write_bytes(raw)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([command, str(path), "--results-dir", str(results)])
        message = err.getvalue()
        assert code == 2, f"{what}: exit {code}\n{message}"
        assert message.count("keras-ablate: error:") == 1, f"{what}:\n{message}"
        assert message.startswith(f"keras-ablate: error: {path}"), f"{what}:\n{message}"
        assert not results.exists(), f"{what}: {command} wrote {sorted(results.rglob('*'))}"
        tried.append(what)

    check()
    print(f"{len(tried)} malformed experiment files tried, all refused cleanly")
    assert len(tried) >= 300
