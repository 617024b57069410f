"""Which version a ModelDeployment should serve, and the next step of its rollout. Pure.

The controller observes the Models and the two Deployments (stable, canary),
calls `resolve` and `plan`, and applies what the plan says. Everything time-
dependent takes `now`, so every branch is reachable from a unit test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops_operator.api import Condition, Model, ModelDeployment, ModelDeploymentStatus
from mlops_operator.api.common import LabelSelector
from mlops_operator.api.modeldeployment import (
    HISTORY_LIMIT,
    CanaryStatus,
    MetricGate,
    ModelChoice,
    RolloutRecord,
)
from mlops_operator.builders.analysis import Judgement
from mlops_operator.builders.conditions import Readiness, condition, set_condition, set_readiness
from mlops_operator.builders.meta import Event
from mlops_operator.builders.serving import VERSION_LABEL, split_replicas, total_replicas

# Degraded's reasons after a rollback: the old version serves, the new one is skipped.
ROLLBACK_REASONS = frozenset({"RolledBack", "AnalysisFailed"})


@dataclass(frozen=True)
class Track:
    """What one Deployment (stable or canary) is doing."""

    exists: bool = False
    version: int | None = None
    replicas: int = 0
    ready: int = 0
    done: bool = False  # every desired pod updated and Ready
    # The Deployment's own Progressing condition says ProgressDeadlineExceeded.
    stuck: bool = False
    # Container restarts summed over the track's pods (the controller counts them for a
    # canary in progress; 0 when not counted).
    restarts: int = 0


@dataclass(frozen=True)
class Plan:
    """What to apply: stable (version, replicas or None for the HPA), canary or none."""

    stable: tuple[int, int | None] | None
    canary: tuple[int, int] | None
    status: ModelDeploymentStatus
    events: list[Event] = field(default_factory=list)

    @property
    def in_progress(self) -> bool:
        progressing = condition(self.status.conditions, "Progressing")
        return progressing is not None and progressing.status == "True"


def track(deployment: dict[str, Any] | None) -> Track:
    if deployment is None:
        return Track()
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    version = labels.get(VERSION_LABEL)
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    current = int(status.get("observedGeneration") or 0) >= int(
        deployment["metadata"].get("generation") or 0
    )
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    stuck = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    return Track(
        exists=True,
        version=int(version) if version else None,
        replicas=desired,
        ready=ready,
        done=current and updated == desired and total == desired and ready >= desired,
        stuck=current and stuck,
    )


# --- choosing the version --------------------------------------------------------------


def resolve(
    choice: ModelChoice, models: list[Model], current: Model | None, skip: int | None
) -> tuple[Model | None, str]:
    """The Model to serve and why; None with the reason when nothing qualifies."""
    mine = [m for m in models if m.spec.model_name == choice.name]
    if choice.version is not None:
        pinned = next((m for m in mine if m.spec.version == choice.version), None)
        if pinned is None:
            return None, f"pinned version {choice.version} of {choice.name} does not exist"
        if choice.version == skip:
            return current, f"pinned version {skip} was rolled back; change the spec to retry"
        return pinned, f"pinned to version {choice.version}"
    policy = choice.policy
    assert policy is not None, "ModelChoice has exactly one of version or policy"
    candidates = [
        m
        for m in mine
        if m.spec.version != skip
        and selector_matches(policy.selector, m.metadata.labels)
        and all(gate_passes(g, m.spec.metrics) for g in policy.gates)
        and not (
            policy.must_beat_current
            and current is not None
            and m.spec.version != current.spec.version
            and not beats(m, current, policy.gates)
        )
    ]
    if not candidates:
        return current, f"no version of {choice.name} matches the selector and passes the gates"
    newest = max(candidates, key=lambda m: m.spec.version)
    gates = ", ".join(
        f"{g.metric}={newest.spec.metrics.get(g.metric):g} {g.operator} {g.value:g}"
        for g in policy.gates
    )
    return newest, f"newest matching version {newest.spec.version}" + (
        f" ({gates})" if gates else ""
    )


def selector_matches(selector: LabelSelector, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        value = labels.get(req.key)
        ok = {
            "In": value in req.values,
            "NotIn": value not in req.values,
            "Exists": req.key in labels,
            "DoesNotExist": req.key not in labels,
        }[req.operator]
        if not ok:
            return False
    return True


def gate_passes(gate: MetricGate, metrics: dict[str, float]) -> bool:
    value = metrics.get(gate.metric)
    return value is not None and _compare(value, gate.operator, gate.value)


def beats(candidate: Model, current: Model, gates: list[MetricGate]) -> bool:
    """At least as good as the served version on every gate's metric, in its direction."""
    for gate in gates:
        new, old = candidate.spec.metrics.get(gate.metric), current.spec.metrics.get(gate.metric)
        if new is None:
            return False
        if old is not None and not _compare(new, ">=" if gate.operator[0] == ">" else "<=", old):
            return False
    return True


def _compare(value: float, operator: str, threshold: float) -> bool:
    return {
        ">=": value >= threshold,
        ">": value > threshold,
        "<=": value <= threshold,
        "<": value < threshold,
    }[operator]


def skipped_version(md: ModelDeployment) -> int | None:
    """The rolled-back version, honoured until the spec changes (a new generation)."""
    status = md.status
    if status is None or status.failed_version is None:
        return None
    degraded = condition(status.conditions, "Degraded")
    if degraded is None or degraded.observed_generation != md.metadata.generation:
        return None
    return status.failed_version


@dataclass(frozen=True)
class AnalysisDue:
    """A canary step past its pause, with an analysis to pass: read these windows."""

    version: int  # the canary's
    window_seconds: int  # since the step's pods were Ready


def analysis_due(md: ModelDeployment, now: datetime) -> AnalysisDue | None:
    """Whether `plan` will want a Judgement now: the controller reads the monitors only then."""
    canary = md.spec.strategy.canary
    state = md.status.canary if md.status else None
    if canary is None or canary.analysis is None or state is None:
        return None
    if state.step >= len(canary.steps) or state.step_started_at is None:
        return None
    held = (now - state.step_started_at).total_seconds()
    if held < canary.steps[state.step].pause_seconds:
        return None
    return AnalysisDue(state.version, max(10, math.ceil(held)))


# --- the rollout -----------------------------------------------------------------------


def plan(
    md: ModelDeployment,
    target: Model | None,
    reason: str,
    stable: Track,
    canary: Track,
    now: datetime,
    why_not_ready: str | None = None,
    judgement: Judgement | None = None,
) -> Plan:
    """`why_not_ready`: what the new version's pods say keeps them from being Ready (see
    `pods.why_not_ready`), for the message of a rollout that passed its deadline.
    `judgement`: the canary analysis, when `analysis_due` said it is wanted."""
    previous = md.status or ModelDeploymentStatus()
    current = previous.current_version
    planner = _Planner(md, previous, target, reason, stable, canary, now, why_not_ready, judgement)
    if target is None and current is None:
        return planner.nothing_to_serve()
    if current is None:
        return planner.first_rollout()
    if target is None or target.spec.version == current:
        return planner.steady()
    if md.spec.strategy.type == "Canary":
        return planner.canary_rollout()
    return planner.rolling_rollout()


@dataclass
class _Planner:
    md: ModelDeployment
    previous: ModelDeploymentStatus
    target: Model | None
    reason: str
    stable: Track
    canary: Track
    now: datetime
    why_not_ready: str | None = None
    judgement: Judgement | None = None
    events: list[Event] = field(default_factory=list)

    # -- outcomes

    def nothing_to_serve(self) -> Plan:
        # A Model may yet be registered (a training run in the same commit): keep waiting.
        status = self._status(ready=("Reconciling", "NoModel", self.reason))
        status = self._set(status, "Progressing", False, "NoModel", self.reason)
        return Plan(None, None, status, self.events)

    def first_rollout(self) -> Plan:
        version = self._target_version()
        history = self._history_for(version)
        if self.stable.done and self.stable.version == version:
            return self._succeeded(version, history, previous_version=None)
        status = self._status(
            ready=("Reconciling", "RollingOut", f"first rollout of version {version}"),
            history=history,
        )
        status = self._set(status, "Progressing", True, "RollingOut", f"rolling out {version}")
        if self._deadline_passed(history[0]):
            status = self._deadline_exceeded(status, version, "no earlier version to go back to")
        return Plan((version, self._replicas()), None, status, self.events)

    def steady(self) -> Plan:
        current = self.previous.current_version
        assert current is not None
        history = list(self.previous.history)
        if history and history[0].outcome == "Progressing":
            history[0] = self._close(history[0], "Superseded", "the target changed back")
        ready = self.stable.done and self.stable.version == current
        state: Readiness = "Ready" if ready else "Reconciling"
        reason, message = ("Serving" if ready else "Scaling"), f"serving version {current}"
        degraded = condition(self.previous.conditions, "Degraded")
        if skipped_version(self.md) is not None and degraded is not None:
            # Rolled back: the old version serves, but what was asked for is not; someone
            # must act (fix the model, pin a version), or a newer version must come.
            state, reason, message = "Stalled", degraded.reason, degraded.message
        status = self._status(ready=(state, reason, message), history=history, canary=None)
        status = self._set(status, "Progressing", False, "RolloutComplete", f"serving {current}")
        return Plan((current, self._replicas()), None, status, self.events)

    def rolling_rollout(self) -> Plan:
        version = self._target_version()
        history = self._history_for(version)
        if self.stable.done and self.stable.version == version:
            return self._succeeded(version, history, self.previous.current_version)
        if self._deadline_passed(history[0]) and self.md.spec.auto_rollback:
            return self._rolled_back(version, history)
        status = self._status(
            ready=("Reconciling", "RollingOut", f"rolling out version {version}"), history=history
        )
        status = self._set(status, "Progressing", True, "RollingOut", f"rolling out {version}")
        if self._deadline_passed(history[0]):
            status = self._deadline_exceeded(status, version, "autoRollback is off")
        return Plan((version, self._replicas()), None, status, self.events)

    def canary_rollout(self) -> Plan:
        version = self._target_version()
        current = self.previous.current_version
        assert current is not None
        history = self._history_for(version)
        steps = self.md.spec.strategy.canary.steps if self.md.spec.strategy.canary else []
        state = self.previous.canary
        if state is None or state.version != version:
            state = CanaryStatus(version=version, step=0, weight=steps[0].weight)
        if state.step_entered_at is None:
            # Step 0 began with the rollout; a status written before this field existed
            # starts a later step's clock now.
            entered = history[0].started_at if state.step == 0 else self.now
            state = state.model_copy(update={"step_entered_at": entered})
        if state.step >= len(steps):
            return self._promotion(version, current, history, state)

        at = f"step {state.step + 1} of {len(steps)} ({state.weight}%)"
        stable_replicas, canary_replicas = split_replicas(self.md, state.weight)
        # Ready at this step's size: a successor that finds the previous step's pods (its
        # predecessor recorded the step, then died before scaling) does not count them.
        ready_now = (
            self.canary.done
            and self.canary.version == version
            and self.canary.replicas == canary_replicas
        )
        broken = self._step_failure(version, state, ready_now, at)
        if broken and self.md.spec.auto_rollback:
            return self._rolled_back(version, history, why=broken)
        state = self._step_clocks(state, ready_now)
        waiting = ""  # what the step's analysis waits for
        failed = ""  # why it failed, with autoRollback off
        if ready_now and state.step_started_at is not None and not broken:
            held = (self.now - state.step_started_at).total_seconds()
            pause = steps[state.step].pause_seconds
            if held >= pause:
                verdict = self._analysis(version, at, held - pause)
                if verdict is not None and verdict.outcome == "Failed":
                    failed = f"analysis failed at {at}: {verdict.message}"
                    if self.md.spec.auto_rollback:
                        return self._rolled_back(version, history, "AnalysisFailed", failed)
                elif verdict is None or verdict.outcome == "Passed":
                    step = state.step + 1
                    weight = steps[step].weight if step < len(steps) else 100
                    state = CanaryStatus(
                        version=version, step=step, weight=weight, step_entered_at=self.now
                    )
                    return self._replan_with(state, history)
                else:
                    waiting = f"; analysis waiting: {verdict.message}"
        failed = f"{failed}; autoRollback is off" if failed else ""
        # Stalled from the start of the pass, so a held failure does not flap its condition.
        ready: tuple[Readiness, str, str] = (
            ("Stalled", "AnalysisFailed", failed)
            if failed
            else ("Reconciling", "Canary", f"canary of version {version} at {state.weight}%")
        )
        status = self._status(ready=ready, history=history, canary=state)
        message = f"canary {version}: step {state.step + 1} of {len(steps)}, {state.weight}%"
        if not (broken or failed):  # else Progressing is False, set once below
            status = self._set(status, "Progressing", True, "Canary", message + waiting)
        if broken:  # the Deployment keeps trying: Ready pods later still go on
            why = f"{broken}; not rolled back: autoRollback is off"
            status = self._stall(status, "ProgressDeadlineExceeded", why)
        if failed:  # held at this step, never promoted so; judged again on the next pass
            status = self._stall(status, "AnalysisFailed", failed)
        stable = (current, None if self.md.spec.autoscaling else stable_replicas)
        return Plan(stable, (version, canary_replicas), status, self.events)

    def _promotion(
        self, version: int, current: int, history: list[RolloutRecord], state: CanaryStatus
    ) -> Plan:
        """The stable track takes the new version; the canary serves until it has."""
        if self.stable.done and self.stable.version == version:
            return self._succeeded(version, history, current)
        assert state.step_entered_at is not None
        late = self.stable.stuck or self._passed(state.step_entered_at)
        broken = (
            f"version {version} was not Ready within {self._deadline()}s of its promotion"
            f"{self._why()}"
            if late
            else ""
        )
        if broken and self.md.spec.auto_rollback:
            return self._rolled_back(version, history, why=broken)
        status = self._status(
            ready=("Reconciling", "Promoting", f"promoting version {version}"),
            history=history,
            canary=state,
        )
        if broken:
            why = f"{broken}; not rolled back: autoRollback is off"
            status = self._stall(status, "ProgressDeadlineExceeded", why)
        else:
            status = self._set(status, "Progressing", True, "Promoting", f"promoting {version}")
        keep = (version, self.canary.replicas) if self.canary.exists else None
        return Plan((version, self._replicas()), keep, status, self.events)

    def _step_failure(self, version: int, state: CanaryStatus, ready_now: bool, at: str) -> str:
        """Why this step of the canary failed, or "": not Ready within the deadline of the
        step's start, not Ready again within it once it had been, a container restart since
        the step's pods were Ready, or its Deployment's own deadline passed."""
        if self.canary.stuck and self.canary.version == version:
            return (
                f"the Deployment of version {version} exceeded its progress deadline at {at}"
                f"{self._why()}"
            )
        if state.step_started_at is not None and self.canary.restarts > state.restarts:
            restarted = self.canary.restarts - state.restarts
            return f"a container of version {version} restarted at {at} ({restarted} restarts)"
        if ready_now:
            return ""
        if state.step_started_at is not None:  # it was Ready in this step
            if state.unready_since is not None and self._passed(state.unready_since):
                return (
                    f"version {version} stopped being Ready at {at} and was not Ready again"
                    f" within {self._deadline()}s{self._why()}"
                )
            return ""
        assert state.step_entered_at is not None
        if self._passed(state.step_entered_at):
            within = f"within {self._deadline()}s"
            return f"version {version} was not Ready {within} at {at}{self._why()}"
        return ""

    def _step_clocks(self, state: CanaryStatus, ready_now: bool) -> CanaryStatus:
        """When the step's pods became Ready (the pause starts), stopped being Ready, and
        how many restarts its pods had then."""
        if ready_now and state.step_started_at is None:
            message = f"version {state.version} Ready at {state.weight}% of the replicas"
            self.events.append(Event("Normal", "CanaryStep", message))
            update: dict[str, Any] = {"step_started_at": self.now, "unready_since": None}
            return state.model_copy(update=update | {"restarts": self.canary.restarts})
        if ready_now:
            # A pod replaced since counts its restarts from 0: never wait for more than now.
            restarts = min(state.restarts, self.canary.restarts)
            return state.model_copy(update={"unready_since": None, "restarts": restarts})
        if state.step_started_at is not None and state.unready_since is None:
            return state.model_copy(update={"unready_since": self.now})
        return state

    def _analysis(self, version: int, at: str, waited: float) -> Judgement | None:
        """The step's analysis verdict; None when it has none (the step advances). Too
        little traffic for longer than the progress deadline fails it: a canary that
        cannot be judged is not promoted."""
        canary = self.md.spec.strategy.canary
        if canary is None or canary.analysis is None:
            return None
        verdict = self.judgement or Judgement("Waiting", "the monitors were not read")
        if verdict.outcome == "Waiting" and waited > self._deadline():
            message = f"still waiting after {self._deadline()}s: {verdict.message}"
            return Judgement("Failed", message)
        if verdict.outcome == "Passed":
            self.events.append(
                Event("Normal", "AnalysisPassed", f"canary {version} at {at}: {verdict.message}")
            )
        return verdict

    def _replan_with(self, state: CanaryStatus, history: list[RolloutRecord]) -> Plan:
        """Advance one step now: the next step's replicas are what to apply."""
        previous = self.previous.model_copy(update={"canary": state, "history": history})
        md = self.md.model_copy(update={"status": previous})
        # The canary's new replicas are not Ready yet, whatever the old ones were.
        canary = Track(self.canary.exists, self.canary.version, self.canary.replicas)
        nxt = _Planner(md, previous, self.target, self.reason, self.stable, canary, self.now)
        nxt.events = self.events
        return nxt.canary_rollout()

    def _succeeded(
        self, version: int, history: list[RolloutRecord], previous_version: int | None
    ) -> Plan:
        history[0] = self._close(history[0], "Succeeded", f"version {version} is serving")
        self.events.append(Event("Normal", "RolloutSucceeded", f"serving version {version}"))
        status = self._status(
            ready=("Ready", "Serving", f"serving version {version}"),
            history=history,
            canary=None,
            current_version=version,
            current_model=self.target.metadata.name if self.target else None,
            previous_version=previous_version,
        )
        status = self._set(status, "Progressing", False, "RolloutComplete", f"serving {version}")
        status = self._set(status, "Degraded", False, "AsExpected", "the last rollout succeeded")
        return Plan((version, self._replicas()), None, status, self.events)

    def _rolled_back(
        self,
        version: int,
        history: list[RolloutRecord],
        reason: str = "RolledBack",
        why: str | None = None,
    ) -> Plan:
        """Back to the served version: the new one was not Ready in time, or (`why`, reason
        AnalysisFailed) its canary failed an analysis."""
        current = self.previous.current_version
        why = why or f"version {version} was not Ready within {self._deadline()}s{self._why()}"
        message = f"{why}; rolled back to version {current}"
        history[0] = self._close(history[0], "RolledBack", message)
        self.events.append(Event("Warning", reason, message[:1024]))
        status = self._status(
            ready=("Stalled", reason, message),
            history=history,
            canary=None,
            failed_version=version,
        )
        status = self._set(status, "Progressing", False, reason, message)
        status = self._set(status, "Degraded", True, reason, message)
        assert current is not None
        return Plan((current, self._replicas()), None, status, self.events)

    # -- helpers

    def _why(self) -> str:
        return f" ({self.why_not_ready})" if self.why_not_ready else ""

    def _target_version(self) -> int:
        assert self.target is not None
        return self.target.spec.version

    def _replicas(self) -> int | None:
        return None if self.md.spec.autoscaling else total_replicas(self.md)

    def _deadline(self) -> int:
        return self.md.spec.progress_deadline_seconds

    def _deadline_passed(self, record: RolloutRecord) -> bool:
        return self._passed(record.started_at)

    def _passed(self, since: datetime) -> bool:
        """More than progressDeadlineSeconds since `since`."""
        return (self.now - since).total_seconds() > self._deadline()

    def _history_for(self, version: int) -> list[RolloutRecord]:
        """History with an open record for `version` first; an older open one is superseded."""
        history = list(self.previous.history)
        if history and history[0].outcome == "Progressing" and history[0].version == version:
            return history
        if history and history[0].outcome == "Progressing":
            history[0] = self._close(history[0], "Superseded", f"version {version} came next")
        assert self.target is not None
        assert self.target.metadata.name
        record = RolloutRecord(
            version=version,
            model=self.target.metadata.name,
            started_at=self.now,
            outcome="Progressing",
        )
        self.events.append(Event("Normal", "RolloutStarted", f"{self.reason}; rolling out"))
        return [record, *history][:HISTORY_LIMIT]

    def _close(self, record: RolloutRecord, outcome: Any, message: str) -> RolloutRecord:
        return record.model_copy(
            update={"outcome": outcome, "finished_at": self.now, "message": message[:1024]}
        )

    def _status(
        self, *, ready: tuple[Readiness, str, str], **updates: Any
    ) -> ModelDeploymentStatus:
        state, reason, message = ready
        status = self.previous.model_copy(
            update={
                "observed_generation": self.md.metadata.generation,
                "replicas": self.stable.replicas + self.canary.replicas,
                "ready_replicas": self.stable.ready + self.canary.ready,
                "resolved_reason": self.reason[:1024],
                **updates,
            }
        )
        degraded = condition(status.conditions, "Degraded")
        rolled_back = degraded is not None and degraded.reason in ROLLBACK_REASONS
        forgiven = self.previous.failed_version is not None and skipped_version(self.md) is None
        if rolled_back and forgiven and "failed_version" not in updates:
            # A new generation forgives the rolled-back version.
            status = status.model_copy(update={"failed_version": None})
            status = self._set(status, "Degraded", False, "AsExpected", "the spec changed")
        conditions = set_readiness(
            list(status.conditions),
            state,
            reason,
            message,
            generation=self.md.metadata.generation,
            now=self.now,
        )
        return status.model_copy(update={"conditions": conditions})

    def _deadline_exceeded(
        self, status: ModelDeploymentStatus, version: int, why_no_rollback: str
    ) -> ModelDeploymentStatus:
        """Past the deadline with nothing to roll back to: say so, terminally, once. The
        Deployment keeps trying, so pods that become Ready later still finish the rollout
        (their Deployment's events wake the reconcile; no tick is needed)."""
        message = (
            f"version {version} is not Ready after {self._deadline()}s{self._why()};"
            f" not rolled back: {why_no_rollback}"
        )
        return self._stall(status, "ProgressDeadlineExceeded", message)

    def _stall(
        self, status: ModelDeploymentStatus, reason: str, message: str
    ) -> ModelDeploymentStatus:
        """A failure that needs someone to act, without a rollback: Stalled and Degraded,
        Progressing False, and one Warning Event while the reason lasts."""
        was = condition(self.previous.conditions, "Stalled")
        if was is None or was.reason != reason:
            self.events.append(Event("Warning", reason, message[:1024]))
        status = self._set(status, "Degraded", True, reason, message)
        status = self._set(status, "Progressing", False, reason, message)
        conditions = set_readiness(
            list(status.conditions),
            "Stalled",
            reason,
            message,
            generation=self.md.metadata.generation,
            now=self.now,
        )
        return status.model_copy(update={"conditions": conditions})

    def _set(
        self, status: ModelDeploymentStatus, type_: str, ok: bool, reason: str, message: str
    ) -> ModelDeploymentStatus:
        conditions: list[Condition] = set_condition(
            list(status.conditions),
            type_,
            ok,
            reason,
            message,
            generation=self.md.metadata.generation,
            now=self.now,
        )
        return status.model_copy(update={"conditions": conditions})
