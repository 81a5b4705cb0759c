"""Errors that say where: file, line and key path of a mistake in an experiment file."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from keras_ablate import yaml_input
from keras_ablate.errors import ConfigError, suggest
from keras_ablate.yaml_input import format_path


def line_map(text: str) -> dict[tuple, int]:
    """Map key paths ('grid', 'activation', 2) to 1-based line numbers in the YAML text."""
    try:
        return yaml_input.load(text, "<text>")[1]
    except ConfigError:
        return {}


class Locator:
    """Turns a key path into 'file:line: key.path: message' errors for one source file."""

    def __init__(self, source: str, text: str = "", lines: dict[tuple, int] | None = None):
        self.source = source
        self.lines = lines if lines is not None else line_map(text)

    def where(self, path: tuple) -> str:
        # Use the deepest prefix of the path that has a line.
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return f"{self.source}:{self.lines[path[:cut]]}"
        return self.source

    def error(self, path: tuple, message: str) -> ConfigError:
        key = format_path(path)
        return ConfigError(
            f"{self.where(path)}: {key}: {message}" if key else f"{self.where(path)}: {message}"
        )


def pydantic_message(err: dict, model: type[BaseModel] | None) -> str:
    """One pydantic error in words; an unknown key lists the valid ones and the closest."""
    if err["type"] == "extra_forbidden" and model is not None:
        bad = err["loc"][-1]
        valid = list(model.model_fields)
        return f"unknown key '{bad}'{suggest(str(bad), valid)}; valid keys: {', '.join(valid)}"
    msg = err["msg"]
    # pydantic prefixes messages from our validators with "Value error, ".
    return msg.removeprefix("Value error, ")


def raise_validation(
    loc: Locator, prefix: tuple, exc: ValidationError, model, errors: list | None = None
) -> None:
    """Raise one ConfigError listing every error of `exc` (or `errors`), each located under `prefix`."""
    messages = []
    for err in exc.errors() if errors is None else errors:
        path = prefix + tuple(err["loc"])
        messages.append(loc.error(path, pydantic_message(err, model)).args[0])
    raise ConfigError("\n".join(messages))
