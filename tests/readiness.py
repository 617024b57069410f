"""The summary every kind's conditions give, checked against the rules Flux, kstatus and
Argo CD rely on (fluxcd/pkg runtime/conditions/check): tests call `summary` instead of
reading Ready alone, so a status that breaks a rule fails whichever test produced it."""

from __future__ import annotations

from typing import Any

from mlops_operator.api import Condition


def summary(conditions: list[Condition] | list[dict[str, Any]]) -> tuple[str, str]:
    """(state, reason): state is Ready, Reconciling or Stalled."""
    by_type = {
        c.type if isinstance(c, Condition) else c["type"]: (
            c if isinstance(c, Condition) else Condition.model_validate(c)
        )
        for c in conditions
    }
    ready = by_type.get("Ready")
    assert ready is not None, "Ready must always be present"
    reconciling, stalled = by_type.get("Reconciling"), by_type.get("Stalled")
    assert not (reconciling and stalled), "only one of Reconciling and Stalled at a time"
    for extra in (reconciling, stalled):
        if extra is None:
            continue
        assert extra.status == "True", f"{extra.type} is present only while True"
        assert ready.status == "False", f"Ready must be False while {extra.type} is True"
        assert (ready.reason, ready.message) == (extra.reason, extra.message), (
            f"Ready says what {extra.type} says"
        )
    for c in by_type.values():
        assert c.observed_generation is not None, f"{c.type} has no observedGeneration"
    if stalled:
        return "Stalled", stalled.reason
    if reconciling:
        return "Reconciling", reconciling.reason
    assert ready.status == "True", "Ready=False needs Reconciling or Stalled to say which"
    return "Ready", ready.reason
