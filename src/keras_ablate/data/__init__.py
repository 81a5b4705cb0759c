"""Dataset registry: YAML names -> option schemas and loaders, with an in-memory and on-disk cache.

Importing this module does not import TensorFlow; loaders that need Keras import it lazily.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from keras_ablate.data.base import Dataset
from keras_ablate.data.cache import atomic_pickle, cache_dir
from keras_ablate.errors import ConfigError, unknown_name
from keras_ablate.usercode import UserCodeError, is_ref, split_ref


@dataclass(frozen=True)
class DatasetEntry:
    """Where a dataset's option schema and loader live ("module:attribute" strings, imported lazily)."""

    options: str
    loader: str
    # Whether the result may be pickled to the disk cache (loaders with their own cache say False).
    disk_cache: bool = True
    # Optional "module:function" options -> dict naming the content the data comes from (file
    # hashes). It joins the run ids, so editing a user's CSV never reuses runs of the old file.
    fingerprint: str | None = None
    # Optional "module:function" options -> training examples, reading a user's file now (without
    # TensorFlow) so that bad data stops `plan` and `run` before any run starts (DataError).
    check: str | None = None
    # Whether the functions read files or modules named relative to the experiment file's
    # folder: they then take `base_dir` (and a user dataset its "module:function" `ref`).
    located: bool = False
    ref: str | None = None

    def _where(self, base_dir) -> dict:
        if not self.located:
            return {}
        return (
            {"base_dir": base_dir} if self.ref is None else {"base_dir": base_dir, "ref": self.ref}
        )

    def fingerprint_of(self, options: BaseModel, base_dir=None) -> dict | None:
        if not self.fingerprint:
            return None
        return _resolve(self.fingerprint)(options, **self._where(base_dir))

    def check_of(self, options: BaseModel, base_dir=None) -> int | None:
        """Check the data the options point at; return the training-set size when known."""
        if self.check:
            return _resolve(self.check)(options, **self._where(base_dir))
        return getattr(options, "n_train", None)

    def options_model(self) -> type[BaseModel]:
        return _resolve(self.options)

    def load_fn(self, base_dir=None) -> Callable[[BaseModel], Dataset]:
        loader = _resolve(self.loader)
        where = self._where(base_dir)
        return lambda options: loader(options, **where)


DATASETS: dict[str, DatasetEntry] = {
    "ngram": DatasetEntry(
        "keras_ablate.data.synthetic:NgramOptions", "keras_ablate.data.synthetic:ngram"
    ),
    "recall": DatasetEntry(
        "keras_ablate.data.synthetic:RecallOptions", "keras_ablate.data.synthetic:recall"
    ),
    "adding": DatasetEntry(
        "keras_ablate.data.synthetic:AddingOptions", "keras_ablate.data.synthetic:adding"
    ),
    # Real text and user files cache themselves, keyed by the source file's content as well as the options.
    "rotten_tomatoes": DatasetEntry(
        "keras_ablate.data.text_options:RottenTomatoesOptions",
        "keras_ablate.data.text:rotten_tomatoes",
        disk_cache=False,
    ),
    "imdb": DatasetEntry(
        "keras_ablate.data.text_options:ImdbOptions",
        "keras_ablate.data.text:imdb",
        disk_cache=False,
        located=True,  # its `path` option, when given, is relative to the experiment file
    ),
    "csv": DatasetEntry(
        "keras_ablate.data.text_options:CsvOptions",
        "keras_ablate.data.text:csv_file",
        disk_cache=False,
        fingerprint="keras_ablate.data.text:file_fingerprint",
        check="keras_ablate.data.text:check_file",
        located=True,
    ),
    "tsv": DatasetEntry(
        "keras_ablate.data.text_options:TsvOptions",
        "keras_ablate.data.text:tsv_file",
        disk_cache=False,
        fingerprint="keras_ablate.data.text:file_fingerprint",
        check="keras_ablate.data.text:check_file",
        located=True,
    ),
    "jsonl": DatasetEntry(
        "keras_ablate.data.text_options:JsonlOptions",
        "keras_ablate.data.text:jsonl_file",
        disk_cache=False,
        fingerprint="keras_ablate.data.text:file_fingerprint",
        check="keras_ablate.data.text:check_file",
        located=True,
    ),
}

_MEMORY: dict[str, Dataset] = {}


def _resolve(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def get_entry(name: str) -> DatasetEntry:
    """The registry entry of a dataset name, or of a user's "module:function" (data/user.py)."""
    if is_ref(name):
        try:
            split_ref(name)
        except UserCodeError as exc:
            raise ConfigError(str(exc)) from None
        return DatasetEntry(
            "keras_ablate.data.user:UserOptions",
            "keras_ablate.data.user:load",
            fingerprint="keras_ablate.data.user:fingerprint",
            check="keras_ablate.data.user:check",
            located=True,
            ref=name,
        )
    if name not in DATASETS:
        raise ConfigError(
            unknown_name("dataset", name, DATASETS) + ", or MODULE:FUNCTION (your own loader)"
        )
    return DATASETS[name]


def validate_options(name: str, options: dict) -> BaseModel:
    """Validate a dataset's options against its schema (raises pydantic.ValidationError)."""
    return get_entry(name).options_model().model_validate(options)


def dataset_key(name: str, options: dict) -> str:
    """A short stable hash of the normalized dataset setting (used for caching)."""
    opts = validate_options(name, options).model_dump(mode="json")
    blob = json.dumps({"name": name, "options": opts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_dataset(
    name: str, options: dict | None = None, use_disk_cache: bool = True, base_dir=None
) -> Dataset:
    """Load (or generate) a dataset once per distinct setting; later calls hit the caches.

    `base_dir`: the experiment file's folder, where relative file paths and the user's modules
    are looked up (None: the working directory and sys.path).
    """
    options = options or {}
    entry = get_entry(name)
    opts = entry.options_model().model_validate(options)
    key = dataset_key(name, options)
    fingerprint = entry.fingerprint_of(opts, base_dir)
    if fingerprint:
        key += (
            "-" + hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        )
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / "datasets" / f"{_file_name(name)}-{key}.pkl"
    data = None
    if use_disk_cache and entry.disk_cache and path.exists():
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)
        except Exception:  # A corrupt cache file is rebuilt, never trusted.
            data = None
    if data is None:
        data = entry.load_fn(base_dir)(opts)
        if use_disk_cache and entry.disk_cache:
            atomic_pickle(data, path)
    _MEMORY[key] = data
    return data


def _file_name(name: str) -> str:
    # A user's "module:function" holds a colon, which some file systems refuse.
    return name.replace(":", "--")
