"""Cron schedules in a time zone: when a ContinuousTraining's schedule fires. Pure.

cronsim evaluates the five fields as cron daemons do across daylight-saving changes: a
time that a spring-forward skips runs at the first minute that exists after it, and a
fixed time in the hour that repeats in autumn runs once. `@daily` and the other macros of
Kubernetes CronJobs are spelled out here, since cronsim takes fields only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from mlops_operator.api.continuoustraining import Schedule

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# A schedule missed for longer than this (the operator was down for days) is not searched
# minute by minute: only the latest missed time could run anyway.
MAX_STEPS = 100_000


class InvalidSchedule(ValueError):
    """The cron expression or time zone does not parse."""


def zone(schedule: Schedule) -> ZoneInfo:
    try:
        return ZoneInfo(schedule.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidSchedule(f"timeZone: unknown time zone {schedule.time_zone!r}") from err


def check(schedule: Schedule) -> None:
    """Raise InvalidSchedule, naming the field, unless the schedule parses."""
    times(schedule, datetime(2000, 1, 1, tzinfo=UTC))


def times(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The schedule's times strictly after `after`, as aware datetimes in its zone."""
    fields = MACROS.get(schedule.cron.strip(), schedule.cron)
    if len(fields.split()) != 5:  # cronsim would read six fields as seconds first
        raise InvalidSchedule(f"cron: {schedule.cron!r} must have five fields or be a macro")
    try:
        found = CronSim(fields, after.astimezone(zone(schedule)))
    except CronSimError as err:
        raise InvalidSchedule(f"cron: {schedule.cron!r} is not a cron expression: {err}") from err
    # cronsim steps in local clock time: from the second pass through an autumn hour it can
    # answer the first pass's time, which is earlier than `after`.
    return (t for t in found if t > after)


def next_time(schedule: Schedule, after: datetime) -> datetime:
    return next(times(schedule, after)).astimezone(UTC)


def latest_due(schedule: Schedule, after: datetime, now: datetime) -> tuple[datetime | None, int]:
    """The latest scheduled time in (after, now], and how many times fell in that span."""
    latest, count = None, 0
    for t in times(schedule, after):
        if t > now or count >= MAX_STEPS:
            break
        latest, count = t.astimezone(UTC), count + 1
    return latest, count


def day_of(schedule: Schedule | None, when: datetime) -> str:
    """The calendar day (`YYYY-MM-DD`) of `when` in the schedule's zone, else UTC."""
    tz = zone(schedule) if schedule else UTC
    return when.astimezone(tz).date().isoformat()


def next_day(schedule: Schedule | None, when: datetime) -> datetime:
    """The start of the next calendar day after `when` in the schedule's zone, else UTC."""
    tz = zone(schedule) if schedule else UTC
    local = when.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz) + timedelta(days=1)
    return midnight.astimezone(UTC)
