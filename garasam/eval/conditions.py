"""The conditions of an evaluation: the clean view and each (degradation, severity) of a suite, and
the few shown as qualitative examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from garasam.data.degradations import CLEAN, get_suite
from garasam.errors import ConfigError


@dataclass(frozen=True, order=True)
class Condition:
    """One view of every image: "clean" (severity 0) or a degradation of the suite at one severity."""

    degradation: str
    severity: int

    @property
    def label(self) -> str:
        return self.degradation if self.severity == 0 else f"{self.degradation} severity {self.severity}"


CLEAN_CONDITION = Condition(CLEAN.name, 0)


NO_SUITE = "none"  # evaluate the images as they are, no degradation added


def plan_conditions(
    suite: str, severities: Sequence[int] | None = None, degradations: Sequence[str] | None = None
) -> list[Condition]:
    """Clean, then every (degradation, severity) of `suite` in suite order.

    `severities` defaults to each degradation's own (one for robustseg, 1-5 for imagenet-c);
    `degradations` restricts the suite to some names ("clean" alone, or the suite "none": only the
    clean view, to score photos that are degraded already).
    """
    members = [] if suite == NO_SUITE else get_suite(suite)
    if degradations is not None:
        names = [d.name for d in members]
        degradations = [name for name in degradations if name != CLEAN.name]
        unknown = [name for name in degradations if name not in names]
        if unknown:
            raise ConfigError(f"unknown degradation(s) {unknown} in suite {suite}; names: {', '.join(names)}")
        members = [d for d in members if d.name in set(degradations)]
    conditions = [CLEAN_CONDITION]
    for degradation in members:
        levels = list(degradation.severities) if severities is None else sorted(set(severities))
        bad = [level for level in levels if level not in degradation.severities]
        if bad:
            raise ConfigError(
                f"severities {bad} not available for {suite}/{degradation.name} "
                f"(severities: {list(degradation.severities)})"
            )
        conditions.extend(Condition(degradation.name, level) for level in levels)
    return conditions


def default_example_conditions(conditions: Sequence[Condition], count: int = 3) -> list[Condition]:
    """`count` degradations spread evenly over the suite, each at its highest evaluated severity."""
    names = list(dict.fromkeys(c.degradation for c in conditions if c != CLEAN_CONDITION))
    if not names:
        return []
    picks = sorted({round(i * (len(names) - 1) / max(count - 1, 1)) for i in range(min(count, len(names)))})
    return [max(c for c in conditions if c.degradation == names[i]) for i in picks]
