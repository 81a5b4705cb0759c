"""Which recurrent layers of a model the probes can replay, and why the others cannot.

Probes replay the model layer by layer (training/probes.py). That works for a functional or
Sequential model whose layers are each called once, on a model with one input. Inside it, every
`keras.layers.RNN` (SimpleRNN, LSTM, GRU, RNN with a Keras cell, the suite's ZooRNN) and every
`Bidirectional` wrapper of one is probed; a Bidirectional layer's directions are recorded as
`<name>/forward` and `<name>/backward`. A recurrent layer anywhere else (inside a nested model,
another wrapper, a model that cannot be replayed) is listed with the reason, so that its missing
rows are said, not silent.
"""

from __future__ import annotations

import keras


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def is_recurrent(layer) -> bool:
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


def why_not_probed(layer) -> str | None:
    """Why a top-level recurrent layer cannot be replayed with a probe cell, or None if it can."""
    rnns = (
        [layer.forward_layer, layer.backward_layer]
        if isinstance(layer, keras.layers.Bidirectional)
        else [layer]
    )
    for rnn in rnns:
        if not isinstance(rnn, keras.layers.RNN):
            return f"its inner layer {type(rnn).__name__} is not a keras.layers.RNN"
        if getattr(rnn, "return_state", False):
            return "return_state=True (the replay reads one output per layer)"
        if getattr(rnn, "stateful", False):
            return "stateful=True (state carried across batches)"
        if not all(isinstance(s, int) for s in _as_list(rnn.cell.state_size)):
            return f"its cell's state is not a vector (state_size {rnn.cell.state_size})"
    return None


def not_replayable(model: keras.Model) -> str | None:
    """Why the model cannot be replayed layer by layer, or None when it can."""
    if len(model.inputs) != 1:
        return f"the model has {len(model.inputs)} inputs (the replay feeds one)"
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            return (
                f"layer '{layer.name}' is called {len(layer._inbound_nodes)} times (shared "
                "layers are not replayed)"
            )
    return None


def skipped_layers(model: keras.Model, probed: set[str], replay_problem: str | None) -> list[dict]:
    """{layer, reason} for every recurrent layer of the model (nested ones too) that is not probed."""
    out = []
    for layer in model.layers:
        if layer.name in probed:
            continue
        if is_recurrent(layer):
            reason = replay_problem or why_not_probed(layer) or "not probed"
            out.append({"layer": layer.name, "reason": reason})
            continue
        covered: set[int] = set()  # a Bidirectional's own two layers are reported with it
        for inner in layer._flatten_layers(include_self=False, recursive=True):
            if not is_recurrent(inner) or id(inner) in covered:
                continue
            if isinstance(inner, keras.layers.Bidirectional):
                covered.update((id(inner.forward_layer), id(inner.backward_layer)))
            kind = "nested model" if isinstance(layer, keras.Model) else type(layer).__name__
            out.append(
                {
                    "layer": f"{layer.name}/{inner.name}",
                    "reason": f"inside {kind} '{layer.name}': only the top-level layers are "
                    "replayed",
                }
            )
    return out
