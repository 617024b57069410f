"""Conditions as the Kubernetes API conventions define them: a list keyed by type.

Every kind summarises itself the same way (`set_readiness`), the pattern kstatus (Flux's
health checks), Argo CD's Lua and Flux's own condition rules (fluxcd/pkg
runtime/conditions/check) all read right:

- done: `Ready=True`, no `Reconciling`, no `Stalled`;
- working, or waiting for something that will come: `Ready=False` and `Reconciling=True`;
- failed in a way that needs someone to change something: `Ready=False` and `Stalled=True`.

`Reconciling` and `Stalled` are present only while True and never both; `Ready` carries the
same reason and message as whichever of them is there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from mlops_operator.api import Condition


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with `type_` set (None: Unknown); lastTransitionTime moves only when
    status flips."""
    new_status: Literal["True", "False", "Unknown"] = (
        "Unknown" if status is None else "True" if status else "False"
    )
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old and old.status == new_status else now
    updated = Condition(
        type=type_,
        status=new_status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if old is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def without(conditions: list[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.type != type_]


Readiness = Literal["Ready", "Reconciling", "Stalled"]


def set_readiness(
    conditions: list[Condition],
    state: Readiness,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with Ready, Reconciling and Stalled saying `state`; others untouched."""
    kept = [c for c in conditions if c.type not in ("Reconciling", "Stalled") or c.type == state]
    updated = set_condition(
        kept, "Ready", state == "Ready", reason, message, generation=generation, now=now
    )
    if state == "Ready":
        return updated
    return set_condition(updated, state, True, reason, message, generation=generation, now=now)


def condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
