"""Choose runs of a plan by axis or setting level: `--filter` (run, plan) and `--arm` (tune)."""

from __future__ import annotations

from pydantic import ValidationError

from keras_ablate.config.levels import DATASET_AXIS_PREFIX
from keras_ablate.config.locate import pydantic_message
from keras_ablate.config.schema import SETTING_KEYS, RunSettings, RunSpec
from keras_ablate.errors import ConfigError, suggest


def filter_specs(
    specs: list[RunSpec], filters: list[str], source: str = "--filter"
) -> list[RunSpec]:
    """Keep runs whose axis/setting values match every 'key=level' filter (levels compared as text)."""
    wanted: dict[str, set[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: '{f}' must look like axis=level")
        if key not in SETTING_KEYS and not key.startswith(DATASET_AXIS_PREFIX):
            axes = list(dict.fromkeys(a for s in specs for a in s.axes))
            raise ConfigError(
                f"{source}: unknown key '{key}'{suggest(key, [*axes, *SETTING_KEYS])}; "
                f"axes of this grid: {', '.join(axes) or 'none'} (or any setting: "
                f"{', '.join(SETTING_KEYS)}, or dataset.<option>)"
            )
        wanted.setdefault(key, set()).add(value)

    def value_of(spec: RunSpec, key: str) -> str:
        if key.startswith(DATASET_AXIS_PREFIX):
            return str(spec.dataset["options"].get(key[len(DATASET_AXIS_PREFIX) :]))
        return str(spec.settings[key])

    def matches(spec: RunSpec) -> bool:
        for key, values in wanted.items():
            normalized = set(values)
            if key == "clip":
                try:
                    normalized = {RunSettings(clip=v).clip for v in values}
                except ValidationError as exc:
                    raise ConfigError(
                        f"{source}: {pydantic_message(exc.errors()[0], None)}"
                    ) from None
            if value_of(spec, key) not in normalized:
                return False
        return True

    return [s for s in specs if matches(s)]


def planned_levels_text(specs: list[RunSpec], filters: list[str]) -> str:
    """'architecture: cnn, lstm; units: 8' for the keys of these filters (what would match)."""
    parts = []
    for key in dict.fromkeys(f.partition("=")[0] for f in filters):
        if key.startswith(DATASET_AXIS_PREFIX):
            values = [s.dataset["options"].get(key[len(DATASET_AXIS_PREFIX) :]) for s in specs]
        else:
            values = [s.settings.get(key) for s in specs]
        levels = list(dict.fromkeys(str(v) for v in values))
        parts.append(f"{key}: {', '.join(levels[:20])}{' ...' if len(levels) > 20 else ''}")
    return "; ".join(parts)
