"""A user's own model for keras-ablate: a bidirectional LSTM classifier.

keras-ablate calls `build_bilstm(settings, dataset)` once per run and trains what it returns.
`settings` holds every built-in setting (units, embed_dim, ...) and, under `params`, the
experiment file's own settings (here `merge_mode`, an axis of the grid). `dataset` says what the
data looks like (vocab_size, seq_len, n_classes, task). Return an uncompiled keras.Model.
"""

import keras


def build_bilstm(settings, dataset):
    params = settings["params"]
    inputs = keras.Input(shape=(dataset.seq_len,), dtype="int32", name="tokens")
    # mask_zero: token 0 is padding, and Keras carries the mask into the recurrent layer.
    x = keras.layers.Embedding(
        dataset.vocab_size, settings["embed_dim"], mask_zero=True, name="embedding"
    )(inputs)
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(settings["units"], name="lstm"),
        merge_mode=params["merge_mode"],
        name="bilstm",
    )(x)
    outputs = keras.layers.Dense(dataset.n_classes, activation="softmax", name="dense_out")(x)
    return keras.Model(inputs, outputs, name="bilstm")
