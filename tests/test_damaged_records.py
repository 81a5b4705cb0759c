"""A damaged run folder is named, counted as missing and retrained; it never stops status or the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from keras_ablate import store
from keras_ablate.cli import main
from keras_ablate.config import load_experiment

pytestmark = pytest.mark.slow

# The smallest recurrent runs (recurrent, so that they write timesteps.parquet too): one run
# per way of damaging a record, plus one left intact.
RUNS = """
name: damage
dataset: {name: ngram, options: {n_train: 32, n_val: 16, seq_len: 8, vocab_size: 12}}
base: {architecture: rnn, epochs: 1, units: 2, embed_dim: 2, batch_size: 16, jit_compile: false}
seeds: 6
"""

# Every way the issue found to break a record file, and one more (a truncated spec.json).
DAMAGE = {
    "history.parquet": b"this is not parquet" * 20,
    "steps.parquet": b"\x00\xff" * 300,
    "timesteps.parquet": b"",
    "summary.json": b"[]",
    "spec.json": b'{"run_id": "',
}


def test_damaged_records_are_named_left_out_and_retrained(tmp_path, capsys):
    path = tmp_path / "damage.yaml"
    path.write_text(RUNS, encoding="utf-8")
    results = tmp_path / "results"
    exp_dir = results / "damage"
    assert main(["run", str(path), "--results-dir", str(results), "--workers", "1"]) == 0
    _, specs = load_experiment(path)
    *victims, intact = [s.run_id for s in specs]
    for run_id, (name, content) in zip(victims, DAMAGE.items(), strict=True):
        assert (exp_dir / "runs" / run_id / name).stat().st_size > len(content)
        (exp_dir / "runs" / run_id / name).write_bytes(content)
    kept = (exp_dir / "runs" / intact / "summary.json").stat().st_mtime_ns

    # status: each damaged run is unreadable, not done, and named with its file.
    capsys.readouterr()
    assert main(["status", str(path), "--results-dir", str(results), "--json"]) == 0
    out, err = capsys.readouterr()
    status = json.loads(out)
    assert (status["done"], status["unreadable"], status["missing"]) == (1, 5, 0)
    assert sorted(status["unreadable_runs"]) == sorted(victims)
    for run_id, name in zip(victims, DAMAGE, strict=True):
        assert name in status["unreadable_runs"][run_id] and run_id in err
    assert main(["status", str(exp_dir)]) == 0
    assert "done 1  diverged 0  failed 0  missing 0  unreadable 5" in capsys.readouterr().out

    # report: built from the intact run; the damaged ones are counted and named.
    assert main(["report", str(path), "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    html = (exp_dir / "report.html").read_text()
    assert '"status-ok">1 ok' in html and '"status-unreadable">5 unreadable' in html
    for run_id in victims:
        assert run_id in html and f"{run_id} cannot be read" in err
    assert list(pd.read_parquet(exp_dir / "tables" / "runs.parquet")["run_id"]) == [intact]

    # run: trains exactly the damaged runs again; every folder is whole afterwards.
    assert main(["run", str(path), "--results-dir", str(results), "--workers", "1"]) == 0
    assert capsys.readouterr().err.count("training it again") == 5
    assert (exp_dir / "runs" / intact / "summary.json").stat().st_mtime_ns == kept
    assert all(store.run_status(exp_dir, r) == "ok" for r in victims)
    assert store.scan_runs(exp_dir)[1] == {}
