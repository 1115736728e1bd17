"""The ``power:`` section of a study config (the dose-response control, :mod:`tckr.privacy.dose_response`) and its
rules, with the ``mia.headline_*`` keys a power study pre-registers. A module of its own beside
:mod:`tckr.core.config`, which holds every other section and calls :func:`check` when it validates a config."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from tckr.core.schema import rng

# The pre-declared tests of "no leakage" on one replicate target: the (1 - alpha) bootstrap interval of the AUC lies
# above 50%, or the one-sided Mann-Whitney test of member vs non-member scores rejects at alpha.
POWER_TESTS = ("auc_ci", "mann_whitney")


@dataclass
class PowerConfig:
    """The dose-response control (``tckr power``): its dose grid, attacks, tests and power target."""

    rhos: list[float] = rng([0.0, 0.0025, 0.005, 0.01, 0.02, 0.04], ge=0, le=1, note="shares of the synthetic set")
    strength: float = rng(0.3, gt=0, lt=1, note="image-to-image strength of the rho series")
    strengths: list[float] = rng([0.1, 0.3, 0.5, 0.7], gt=0, lt=1, note="image-to-image strengths")  # series at strength_rho
    strength_rho: float = rng(0.02, gt=0, le=1, note="the share of the strength series")
    cardinality: float = rng(0.0, ge=0, note="0 = the largest pipeline cardinality")
    attacks: list[str] = field(default_factory=lambda: ["lira_online_fixed", "lira_offline_fixed", "lira_online", "lira_offline", "loss", "rmia"])
    tests: list[str] = field(default_factory=lambda: list(POWER_TESTS))
    alpha: float = rng(0.05, gt=0, lt=1)  # level of each replicate's test
    power_target: float = rng(0.8, gt=0, lt=1)  # detection probability that defines the minimum detectable effect
    seed: int = rng(0, ge=0)  # which rows of each set are replaced (the same rows in the target and every pipeline)


def check(cfg: Any, attacks: tuple[str, ...], fail: Callable[[str, Any, str], None]) -> None:
    """The rules of the power section and of ``mia.headline_attack`` / ``headline_test`` / ``headline_reason``;
    ``attacks`` are the attack names a config accepts, ``fail(key, value, accepted)`` raises the config's error."""
    p, m = cfg.power, cfg.mia

    def distinct(key: str, values: list, accepted: tuple[str, ...] | None = None) -> None:
        bad = [v for v in values if accepted is not None and v not in accepted]
        if bad or not values or len(set(values)) != len(values):
            fail(key, values, "accepted: one or more distinct " + (f"names among {', '.join(accepted)}" if accepted else "values")
                 + (f" ({', '.join(map(repr, bad))} unknown)" if bad else ""))

    distinct("power.rhos", p.rhos)
    distinct("power.strengths", p.strengths)
    distinct("power.attacks", p.attacks, attacks)
    distinct("power.tests", p.tests, POWER_TESTS)
    if 0.0 not in p.rhos:
        fail("power.rhos", p.rhos, "accepted: a list that holds 0 (the undosed students: each test's false-positive rate)")
    piped = m.pipeline_cardinalities or cfg.synthesis.cardinalities
    if p.cardinality and not any(math.isclose(p.cardinality, x) for x in piped):
        fail("power.cardinality", p.cardinality, f"accepted: 0 (the largest) or one of the pipeline cardinalities {piped}")
    if m.headline_attack and m.headline_attack not in attacks:
        fail("mia.headline_attack", m.headline_attack, f"accepted: '' (unset: mia.headline decides) or one of {', '.join(attacks)}")
    if m.headline_attack and m.headline_attack not in m.attacks:
        fail("mia.headline_attack", m.headline_attack, f"the headline attack must be among mia.attacks {m.attacks}")
    if m.headline_test and m.headline_test not in POWER_TESTS:
        fail("mia.headline_test", m.headline_test, f"accepted: '' or one of {', '.join(POWER_TESTS)}")
    if bool(m.headline_attack) != bool(m.headline_test) or (m.headline_attack and not m.headline_reason.strip()):
        fail("mia.headline_attack", m.headline_attack, "set mia.headline_attack, headline_test and headline_reason together "
             "(tckr power --propose prints them), or none")
