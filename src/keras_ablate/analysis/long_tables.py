"""Wide per-run tables -> one long table with integer codes (history: run, epoch, metric; steps: run,
step, quantity, layer), built with one numpy step per run so that 1000 runs load in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd


class LongBuilder:
    """Turns wide per-run tables into one long table with integer codes, one numpy step per run."""

    def __init__(self, index: str, name: str):
        self.index, self.name = index, name
        self.codes: dict[str, int] = {}
        self.parts: list[tuple[np.ndarray, ...]] = []

    def convert(self, table, dtype) -> tuple | None:
        """(columns, index, values) of a wide table, or None when it holds nothing to add."""
        columns = [c for c in table.column_names if c != self.index]
        if not table.num_rows or not columns or self.index not in table.column_names:
            return None
        index = table.column(self.index).to_numpy().astype(np.int32)
        values = np.column_stack(
            [
                table.column(c).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
                for c in columns
            ]
        )
        return columns, index, values

    def add(self, run_code: int, converted: tuple | None) -> None:
        if converted is None:
            return
        columns, index, values = converted
        codes = np.array(
            [self.codes.setdefault(c, len(self.codes)) for c in columns], dtype=np.int32
        )
        n, q = values.shape
        self.parts.append(
            (
                np.full(n * q, run_code, np.int32),
                np.repeat(index, q),
                np.tile(codes, n),
                values.ravel(),
            )
        )

    def frame(self, run_col: str, run_ids: list[str], name_col: str) -> pd.DataFrame:
        names = list(self.codes)
        if not self.parts:
            return pd.DataFrame(
                {
                    run_col: pd.Categorical([], categories=run_ids),
                    self.index: np.zeros(0, np.int32),
                    name_col: pd.Categorical([], categories=names),
                    "value": np.zeros(0),
                }
            )
        runs, index, codes, values = (np.concatenate(p) for p in zip(*self.parts, strict=False))
        return pd.DataFrame(
            {
                run_col: pd.Categorical.from_codes(runs, categories=run_ids),
                self.index: index,
                name_col: pd.Categorical.from_codes(codes, categories=names),
                "value": values,
            }
        )


def split_name(name: str) -> tuple[str, str]:
    """'grad/norm/rnn_0' -> ('grad/norm', 'rnn_0'); 'grad/global_norm' -> ('grad/global_norm', '')."""
    parts = name.split("/")
    return ("/".join(parts[:-1]), parts[-1]) if len(parts) >= 3 else (name, "")


def split_layers(steps: pd.DataFrame) -> pd.DataFrame:
    """Replace the wide column name by (quantity, layer), mapping codes rather than rows."""
    names = steps["name"].cat.categories
    pairs = [split_name(n) for n in names]
    quantities = list(dict.fromkeys(q for q, _ in pairs))
    layers = list(dict.fromkeys(["", *(lay for _, lay in pairs)]))
    q_codes = np.array([quantities.index(q) for q, _ in pairs], dtype=np.int32)
    l_codes = np.array([layers.index(lay) for _, lay in pairs], dtype=np.int32)
    codes = steps["name"].cat.codes.to_numpy()
    return pd.DataFrame(
        {
            "run_id": steps["run_id"],
            "step": steps["step"],
            "quantity": pd.Categorical.from_codes(
                q_codes[codes] if len(codes) else codes, categories=quantities
            ),
            "layer": pd.Categorical.from_codes(
                l_codes[codes] if len(codes) else codes, categories=layers
            ),
            "value": steps["value"],
        }
    )
