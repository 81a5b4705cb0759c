"""Claim rules: the YAML schema (compare, threshold, equivalent, all, any) and its checks against a grid.

A rule is written before the run (the `claim:` section of an experiment file); claims.evaluation
turns it into a verdict on the per-run table.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keras_ablate.config.levels import DATASET_AXIS_PREFIX
from keras_ablate.config.schema import SETTING_KEYS, RunSettings, RunSpec
from keras_ablate.errors import ConfigError

VERDICTS = ("supported", "contradicted", "inconclusive")
TRANSFORMS = ("none", "log10", "abs_log10", "negate")
# The rule kinds; all and any nest the others.
KINDS = ("compare", "threshold", "equivalent", "all", "any")


class LeafRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="short label shown in the report")
    metric: str = Field(min_length=1, description="a column of the per-run table")
    transform: Literal["none", "log10", "abs_log10", "negate"] = "none"
    min_seeds: int = Field(3, ge=2, description="finished runs each group needs")
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    diverged: Literal["worst", "exclude"] | float = "worst"
    better: Literal["higher", "lower"] | None = Field(
        None, description="for diverged: worst (default from the name)"
    )
    counts: bool = Field(
        True, description="false: shown as evidence, not part of an all/any verdict"
    )


class CompareRule(LeafRule):
    """Claim: mean(a) - mean(b) is greater (or less) than `margin`."""

    a: dict[str, Any] = Field(description="axis: level selection of group A")
    b: dict[str, Any] = Field(description="axis: level selection of group B")
    paired: bool = Field(
        False, description="pair runs by seed (same seed = same data and, per arm, same init)"
    )
    direction: Literal["greater", "less"] = "greater"
    margin: float = 0.0


class ThresholdRule(LeafRule):
    """Claim: the mean of the selected group is greater (or less) than `value`."""

    where: dict[str, Any] = Field(default_factory=dict)
    direction: Literal["greater", "less"] = "less"
    value: float


class EquivalentRule(LeafRule):
    """Claim: mean(a) and mean(b) differ by less than `margin` (two one-sided intervals)."""

    a: dict[str, Any]
    b: dict[str, Any]
    margin: float = Field(gt=0)
    paired: bool = Field(False, description="pair runs by seed (see CompareRule)")


class Rule(BaseModel):
    """Exactly one of the keys; `all` / `any` nest."""

    model_config = ConfigDict(extra="forbid")

    compare: CompareRule | None = None
    threshold: ThresholdRule | None = None
    equivalent: EquivalentRule | None = None
    all: list[Rule] | None = None
    any: list[Rule] | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a rule needs exactly one of compare, threshold, equivalent, all, any; got {given or 'none'}"
            )
        if given[0] in ("all", "any") and not getattr(self, given[0]):
            raise ValueError(f"'{given[0]}' needs at least one rule")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def body(self):
        return getattr(self, self.kind)

    def leaves(self) -> list[Rule]:
        if self.kind in ("all", "any"):
            return [leaf for child in self.body for leaf in child.leaves()]
        return [self]


def parse_rule(raw: Any, source: str = "claim.rule") -> Rule:
    """Validate a rule mapping; errors name the key path and the problem."""
    try:
        return Rule.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{source}.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None


def level_text(value: Any) -> str:
    """A level as text, so that 1, 1.0 and '1' select the same runs."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalize_rule(rule: Rule, source: str) -> Rule:
    """Spell selector levels the way run settings are stored ('norm:1' -> 'norm:1.0')."""
    for leaf_rule in rule.leaves():
        leaf = leaf_rule.body
        for where in [leaf.where] if leaf_rule.kind == "threshold" else [leaf.a, leaf.b]:
            for key, level in list(where.items()):
                if key in SETTING_KEYS:
                    try:
                        where[key] = RunSettings.model_validate({key: level}).model_dump(
                            mode="json"
                        )[key]
                    except Exception as exc:  # noqa: BLE001 - pydantic message reworded below
                        raise ConfigError(f"{source}: claim.rule: {key}={level!r}: {exc}") from None
    return rule


def planned_levels(specs: list[RunSpec]) -> dict[str, list]:
    levels: dict[str, list] = {}
    for spec in specs:
        items = list(spec.settings.items()) + [
            (f"{DATASET_AXIS_PREFIX}{k}", v) for k, v in spec.dataset["options"].items()
        ]
        for key, value in items:
            value = ",".join(map(str, value)) if isinstance(value, list) else value
            bucket = levels.setdefault(key, [])
            if value not in bucket:
                bucket.append(value)
    return levels


def check_rule(rule: Rule, levels: dict[str, list], source: str = "claim.rule") -> None:
    """Every selector key must be an axis (or fixed setting) and every level one of its values.

    Args:
        levels: column -> the values it takes in the planned runs.
    """
    for leaf_rule in rule.leaves():
        leaf = leaf_rule.body
        selectors = (
            [("where", leaf.where)]
            if leaf_rule.kind == "threshold"
            else [("a", leaf.a), ("b", leaf.b)]
        )
        for part, where in selectors:
            for key, level in where.items():
                if key not in levels:
                    raise ConfigError(
                        f"{source}: {leaf_rule.kind}.{part}: '{key}' is not a setting of this grid; "
                        f"axes and settings: {', '.join(sorted(levels))}"
                    )
                known = {level_text(v) for v in levels[key]}
                if level_text(level) not in known:
                    raise ConfigError(
                        f"{source}: {leaf_rule.kind}.{part}: {key}={level!r} is not a level of this grid; "
                        f"levels: {sorted(known)}"
                    )
