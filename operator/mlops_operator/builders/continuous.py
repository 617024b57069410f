"""What a ContinuousTraining should do now: which triggers fired, what is decided about
each, the TrainingJob a run is made of, which old runs go, and the status. Pure: the
controller reads the objects and the clock, and writes what this module returns.

Triggers are level-based: each is recomputed from what exists (the newest Ready Dataset
version, a ModelDeployment's condition, the schedule and the clock) against what status says
it acted on last, so a missed event or a restart finds the same decisions. A run's
TrainingJob is named after its trigger (`<ct>-d<version>`, `<ct>-s<minute>`,
`<ct>-c<hash>`): if the status write after creating it was lost, the next pass finds the run
instead of starting it twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from mlops_operator.api import API_VERSION, ContinuousTraining, ContinuousTrainingStatus
from mlops_operator.api.continuoustraining import (
    ACTIVE_LISTED,
    MAX_DECISIONS,
    DailyRuns,
    Decision,
    LastRun,
    TriggerState,
)
from mlops_operator.api.model import TriggerRecord, TriggerType
from mlops_operator.builders import datasets, schedule
from mlops_operator.builders.conditions import set_readiness
from mlops_operator.builders.meta import (
    Event,
    child_labels,
    name_and_uid,
    owner_reference,
    some_names,
)
from mlops_operator.builders.registry import TRIGGER_ANNOTATION

CT_LABEL = "mlops.seed.dev/continuoustraining"
Action = Literal["Started", "Replaced", "Skipped", "Deferred"]


@dataclass(frozen=True)
class Fired:
    """A trigger that fired and has not been acted on."""

    trigger: TriggerType
    detail: str
    suffix: str  # of the run's TrainingJob name
    dataset_version: int | None = None
    schedule_time: datetime | None = None
    condition_since: datetime | None = None
    missed: int = 0  # schedule times that fell in the gap (the operator was down)


@dataclass(frozen=True)
class Run:
    """One of the ContinuousTraining's TrainingJobs, as much of it as decisions need."""

    name: str
    created: str
    # Failed, or succeeded with its output handled: history limits may delete it.
    finished: bool
    # Still training: what concurrencyPolicy looks at. A run that succeeded and is
    # registering its Model is not running, and is never replaced (its Model would be lost).
    running: bool
    succeeded: bool
    registered_model: str | None


@dataclass
class Plan:
    """What to do: runs to create and delete, Events to post, the status to write, and when
    to look again (None: only when something changes)."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    decided: list[Decision] = field(default_factory=list)  # recorded in this pass
    status: ContinuousTrainingStatus = field(default_factory=ContinuousTrainingStatus)
    wake_at: datetime | None = None


def run_of(tj: dict[str, Any]) -> Run:
    status = tj.get("status") or {}
    phase = status.get("phase")
    registered = any(c.get("type") == "ModelRegistered" for c in status.get("conditions") or [])
    return Run(
        name=tj["metadata"]["name"],
        created=tj["metadata"].get("creationTimestamp") or "",
        finished=phase == "Failed" or (phase == "Succeeded" and registered),
        running=phase not in ("Succeeded", "Failed"),
        succeeded=bool(status.get("registeredModel")),
        registered_model=status.get("registeredModel"),
    )


def fired_schedule(ct: ContinuousTraining, created: datetime, now: datetime) -> Fired | None:
    sched = ct.spec.triggers.schedule
    if sched is None:
        return None
    state = ct.status.triggers if ct.status else TriggerState()
    since = state.last_schedule_time or created
    due, count = schedule.latest_due(sched, since, now)
    if due is None:
        return None
    minute = int(due.timestamp() // 60)
    return Fired("schedule", due.strftime("%Y-%m-%dT%H:%M:%SZ"), f"s{minute}",
                 schedule_time=due, missed=count - 1)  # fmt: skip


def fired_dataset(ct: ContinuousTraining, found: list[dict[str, Any]]) -> Fired | None:
    """The newest Ready version of the watched dataset, if newer than the last acted on
    (any version counts as new the first time: a new ContinuousTraining trains on the
    newest data there is)."""
    trigger = ct.spec.triggers.on_new_dataset
    if trigger is None:
        return None
    newest = datasets.newest_ready(found, trigger.name)
    if newest is None:
        return None
    version = int(newest["spec"]["version"])
    last = ct.status.triggers.dataset_version if ct.status else None
    if last is not None and version <= last:
        return None
    return Fired("onNewDataset", newest["metadata"]["name"], f"d{version}",
                 dataset_version=version)  # fmt: skip


def fired_condition(
    ct: ContinuousTraining, md: dict[str, Any] | None, now: datetime
) -> tuple[Fired | None, datetime | None]:
    """The watched condition, if it has had the wanted status for `forSeconds` since a
    transition not acted on yet; else None and when it will have held long enough."""
    trigger = ct.spec.triggers.on_model_deployment
    if trigger is None or md is None:
        return None, None
    conditions = (md.get("status") or {}).get("conditions") or []
    cond = next((c for c in conditions if c.get("type") == trigger.condition), None)
    if cond is None or cond.get("status") != trigger.status or not cond.get("lastTransitionTime"):
        return None, None
    since = parse_time(cond["lastTransitionTime"])
    last = ct.status.triggers.condition_since if ct.status else None
    if last is not None and since <= last:
        return None, None
    held_until = since + timedelta(seconds=trigger.for_seconds)
    if now < held_until:
        return None, held_until
    what = f"ModelDeployment {trigger.name}: {trigger.condition}={trigger.status}"
    detail = f"{what} since {cond['lastTransitionTime']}"
    digest = hashlib.sha256(f"{trigger.name}/{trigger.condition}/{since.isoformat()}".encode())
    return Fired("onModelDeployment", detail[:512], f"c{digest.hexdigest()[:10]}",
                 condition_since=since), None  # fmt: skip


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as the API server writes it."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_name(ct: ContinuousTraining, fired: Fired) -> str:
    return f"{ct.metadata.name}-{fired.suffix}"


def build_trainingjob(ct: ContinuousTraining, fired: Fired) -> dict[str, Any]:
    """The run's TrainingJob: the template, owned by the ContinuousTraining, labelled with
    it, annotated with the trigger (which the Model's lineage records), and for a new
    Dataset version reading exactly that version."""
    name, uid = name_and_uid(ct.metadata)
    spec = ct.spec.template.spec.wire()
    if fired.dataset_version is not None and ct.spec.triggers.on_new_dataset:
        spec["dataset"] = {
            "ref": {"name": ct.spec.triggers.on_new_dataset.name, "version": fired.dataset_version}
        }
    record = TriggerRecord(continuous_training=name, type=fired.trigger, detail=fired.detail)
    template = ct.spec.template.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": run_name(ct, fired),
            "namespace": ct.metadata.namespace,
            "labels": {**template.labels, **child_labels("ContinuousTraining", name)},
            "annotations": {
                **template.annotations,
                TRIGGER_ANNOTATION: json.dumps(record.wire(), sort_keys=True),
            },
            "ownerReferences": [owner_reference("ContinuousTraining", name, uid)],
        },
        "spec": spec,
    }


def expired(ct: ContinuousTraining, runs: list[Run]) -> list[str]:
    """Finished runs past the history limits, oldest first (their Models stay)."""
    ordered = sorted((r for r in runs if r.finished), key=lambda r: (r.created, r.name))
    good = [r.name for r in ordered if r.succeeded]
    bad = [r.name for r in ordered if not r.succeeded]
    keep_good, keep_bad = ct.spec.successful_runs_history_limit, ct.spec.failed_runs_history_limit
    return good[: max(0, len(good) - keep_good)] + bad[: max(0, len(bad) - keep_bad)]


def plan(
    ct: ContinuousTraining,
    runs: list[Run],
    found_datasets: list[dict[str, Any]],
    md: dict[str, Any] | None,
    created: datetime,
    now: datetime,
) -> Plan:
    """Everything a pass decides, from the objects and the clock."""
    previous = ct.status or ContinuousTrainingStatus()
    spec = ct.spec
    state = previous.triggers
    sched = spec.triggers.schedule
    out = Plan()
    active = [r.name for r in runs if r.running]
    started: list[str] = []  # in this pass
    last_run = previous.last_run
    today = schedule.day_of(sched, now)
    daily = (
        previous.daily_runs if previous.daily_runs and previous.daily_runs.day == today else None
    )
    started_today = daily.count if daily else 0
    decisions = list(previous.decisions)
    wakes: list[datetime] = []

    condition, held_until = fired_condition(ct, md, now)
    if held_until:
        wakes.append(held_until)
    fired = [
        f
        for f in (
            fired_schedule(ct, created, now),
            fired_dataset(ct, found_datasets),
            condition,
        )
        if f is not None
    ]
    for f in fired:
        action, reason, message = _decide(ct, f, active, started, last_run, started_today, now)
        run = None
        if action in ("Started", "Replaced"):
            run = run_name(ct, f)
            if action == "Replaced":
                out.delete += active
                message = f"replaced {some_names(sorted(active))} with {run}"
                active = []
            out.create.append(build_trainingjob(ct, f))
            active.append(run)
            started.append(run)
            last_run = LastRun(training_job=run, trigger=f.trigger, detail=f.detail, time=now)
            started_today += 1
        if action != "Deferred":
            state = _acted_on(state, f)
        else:
            wake = _deferred_until(ct, last_run, now, sched)
            if wake is not None:
                wakes.append(wake)
        decision = Decision(time=now, trigger=f.trigger, detail=f.detail, action=action,
                            reason=reason, message=message, training_job=run)  # fmt: skip
        if not _repeats(decisions, decision):
            decisions = [*decisions, decision][-MAX_DECISIONS:]
            out.decided.append(decision)
            text = f"{f.trigger} {f.detail}: {message}"
            out.events.append(Event("Warning" if action == "Skipped" else "Normal",
                                    f"Run{action}", text[:1024]))  # fmt: skip

    next_schedule = None
    if sched is not None:
        next_schedule = schedule.next_time(sched, max(now, state.last_schedule_time or created))
        wakes.append(next_schedule)
    out.delete += [name for name in expired(ct, runs) if name not in out.delete]
    succeeded = sorted((r for r in runs if r.succeeded), key=lambda r: (r.created, r.name))
    last_model = succeeded[-1].registered_model if succeeded else previous.last_successful_model
    out.status = _status(ct, previous, active, last_run, last_model, state, decisions,
                         DailyRuns(day=today, count=started_today) if started_today else None,
                         next_schedule, now)  # fmt: skip
    out.wake_at = min(wakes) if wakes else None
    return out


def _decide(
    ct: ContinuousTraining,
    f: Fired,
    active: list[str],
    started: list[str],
    last_run: LastRun | None,
    started_today: int,
    now: datetime,
) -> tuple[Action, str, str]:
    """(action, reason, message) for one fired trigger. A schedule's run that cannot start
    now is skipped, as a CronJob's is; a Dataset version or a condition waits (Deferred),
    and starts a run as soon as nothing holds it back."""
    spec = ct.spec
    hold: Action = "Skipped" if f.trigger == "schedule" else "Deferred"
    sched = spec.triggers.schedule
    if spec.suspend:
        return hold, "Suspended", "the ContinuousTraining is suspended"
    if f.trigger == "schedule" and sched and sched.starting_deadline_seconds is not None:
        assert f.schedule_time is not None
        late = (now - f.schedule_time).total_seconds()
        if late > sched.starting_deadline_seconds:
            return ("Skipped", "MissedDeadline",
                    f"{late:.0f} s late, past startingDeadlineSeconds"
                    f" {sched.starting_deadline_seconds}")  # fmt: skip
    if last_run is not None and spec.cooldown_seconds:
        ready = last_run.time + timedelta(seconds=spec.cooldown_seconds)
        if now < ready:
            return (
                hold,
                "Cooldown",
                (
                    f"the last run started at {last_run.time:%Y-%m-%dT%H:%M:%SZ}; cooldownSeconds"
                    f" {spec.cooldown_seconds} lasts until {ready:%Y-%m-%dT%H:%M:%SZ}"
                ),
            )
    if spec.max_runs_per_day is not None and started_today >= spec.max_runs_per_day:
        return hold, "DailyLimit", f"{started_today} runs started today (maxRunsPerDay)"
    missed = f" (caught up; {f.missed} earlier times were missed)" if f.missed else ""
    if active and spec.concurrency_policy == "Forbid":
        return hold, "ConcurrencyForbid", f"{some_names(sorted(active))} is still running"
    if active and spec.concurrency_policy == "Replace" and set(active) <= set(started):
        # Two triggers at once: the first one's run is not replaced before it exists.
        return (
            hold,
            "ConcurrentTrigger",
            f"{some_names(sorted(active))} was started by another trigger",
        )
    if active and spec.concurrency_policy == "Replace":
        return "Replaced", "Triggered", ""
    return "Started", "Triggered", f"started {run_name(ct, f)}{missed}"


def _acted_on(state: TriggerState, f: Fired) -> TriggerState:
    update: dict[str, Any] = {}
    if f.schedule_time is not None:
        update["last_schedule_time"] = f.schedule_time
    if f.dataset_version is not None:
        update["dataset_version"] = f.dataset_version
    if f.condition_since is not None:
        update["condition_since"] = f.condition_since
    return state.model_copy(update=update)


def _deferred_until(
    ct: ContinuousTraining, last_run: LastRun | None, now: datetime, sched: Any
) -> datetime | None:
    """When a deferred trigger should be looked at again without any event: the end of the
    cooldown, or of the day for the daily limit (a run finishing is an event of its own)."""
    if ct.spec.suspend:
        return None
    if last_run is not None and ct.spec.cooldown_seconds:
        ready = last_run.time + timedelta(seconds=ct.spec.cooldown_seconds)
        if now < ready:
            return ready
    if ct.spec.max_runs_per_day is not None:
        return schedule.next_day(sched, now)
    return None


def _repeats(decisions: list[Decision], decision: Decision) -> bool:
    """A trigger that keeps waiting for the same reason is recorded (and announced) once."""
    return any(
        d.trigger == decision.trigger
        and d.detail == decision.detail
        and d.action == decision.action
        and d.reason == decision.reason
        for d in decisions
    )


def _status(
    ct: ContinuousTraining,
    previous: ContinuousTrainingStatus,
    active: list[str],
    last_run: LastRun | None,
    last_model: str | None,
    state: TriggerState,
    decisions: list[Decision],
    daily: DailyRuns | None,
    next_schedule: datetime | None,
    now: datetime,
) -> ContinuousTrainingStatus:
    generation = ct.metadata.generation
    if ct.spec.suspend:
        reason, message = "Suspended", "suspended: no run starts"
    elif active:
        reason, message = "Running", f"running {some_names(sorted(active))}"
    else:
        reason, message = "Waiting", "waiting for a trigger"
    # A fixed spec drops Stalled.
    conditions = set_readiness(list(previous.conditions), "Ready", reason, message,
                               generation=generation, now=now)  # fmt: skip
    return previous.model_copy(
        update={
            "conditions": conditions,
            "observed_generation": generation,
            "active": sorted(active)[:ACTIVE_LISTED],
            "active_count": len(active) or None,
            "last_run": last_run,
            "last_successful_model": last_model,
            "next_schedule_time": next_schedule,
            "triggers": state,
            "daily_runs": daily,
            "decisions": decisions,
        }
    )


def invalid_status(
    previous: ContinuousTrainingStatus, generation: int | None, message: str, now: datetime
) -> ContinuousTrainingStatus:
    """A spec only the operator can find invalid (a cron expression or time zone that does
    not parse): not Ready, Stalled, until the spec changes."""
    conditions = set_readiness(list(previous.conditions), "Stalled", "InvalidSpec", message,
                               generation=generation, now=now)  # fmt: skip
    update = {"conditions": conditions, "observed_generation": generation}
    return previous.model_copy(update={**update, "next_schedule_time": None})
