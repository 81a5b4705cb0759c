"""The on-disk dataset cache: where it lives, atomic writes, and text datasets keyed by their content."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import tempfile
from pathlib import Path

from pydantic import BaseModel

from keras_ablate.data.base import Dataset

# Bump when parsing or tokenization changes, so cache files built by older code are not reused.
CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("KERAS_ABLATE_CACHE", Path.home() / ".cache" / "keras-ablate"))


def atomic_pickle(obj, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # A read-only cache folder only costs speed.


def cached(name: str, opts: BaseModel, files: list[Path], build) -> Dataset:
    """Return build(), reusing a pickle keyed by the options and the content of `files`."""
    hashes = [sha256_file(f) for f in files]
    blob = json.dumps(
        {
            "name": name,
            "options": opts.model_dump(mode="json"),
            "files": hashes,
            "version": CACHE_VERSION,
            # A new Keras may order a vocabulary differently.
            "keras": importlib.metadata.version("keras"),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = cache_dir() / "text" / f"{name}-{key}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # A corrupt cache file is rebuilt, never trusted.
            pass
    data = build()
    data.meta["sha256"] = hashes[0][:16]
    atomic_pickle(data, path)
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
