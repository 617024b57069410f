"""Cron schedules in a time zone (builders/schedule.py): next and missed times, DST, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from mlops_operator import api
from mlops_operator.api.continuoustraining import Schedule
from mlops_operator.builders import schedule
from mlops_operator.builders.schedule import InvalidSchedule

NEW_YORK = ZoneInfo("America/New_York")


def sched(cron: str, tz: str | None = None, **extra: Any) -> Schedule:
    return Schedule.model_validate({"cron": cron, **({"timeZone": tz} if tz else {}), **extra})


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(tz: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


def upcoming(s: Schedule, after: datetime, n: int) -> list[datetime]:
    out, t = [], after
    for _ in range(n):
        t = schedule.next_time(s, t)
        out.append(t)
    return out


# --- plain cron and macros -----------------------------------------------------------


def test_next_time_of_plain_cron_is_strictly_after_and_in_utc() -> None:
    s = sched("*/15 9-17 * * 1-5")  # quarter hours, office hours, weekdays
    # 2026-06-05 is a Friday.
    assert schedule.next_time(s, utc(2026, 6, 5, 9, 7)) == utc(2026, 6, 5, 9, 15)
    # Exactly on a scheduled time: the next one, not the same.
    assert schedule.next_time(s, utc(2026, 6, 5, 9, 15)) == utc(2026, 6, 5, 9, 30)
    # After the last time on Friday: Monday 09:00.
    assert schedule.next_time(s, utc(2026, 6, 5, 17, 45)) == utc(2026, 6, 8, 9, 0)
    assert schedule.next_time(s, utc(2026, 6, 5, 9, 7)).tzinfo == UTC


def test_next_time_accepts_an_after_in_another_zone() -> None:
    s = sched("0 12 * * *")
    after = local(ZoneInfo("Asia/Tokyo"), 2026, 6, 1, 22, 0)  # 13:00Z
    assert schedule.next_time(s, after) == utc(2026, 6, 2, 12, 0)


@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@hourly", utc(2026, 6, 3, 10, 20), utc(2026, 6, 3, 11, 0)),
        ("@daily", utc(2026, 6, 3, 10, 20), utc(2026, 6, 4, 0, 0)),
        ("@midnight", utc(2026, 6, 3, 10, 20), utc(2026, 6, 4, 0, 0)),
        # 2026-06-03 is a Wednesday: the next Sunday is 06-07.
        ("@weekly", utc(2026, 6, 3, 10, 20), utc(2026, 6, 7, 0, 0)),
        ("@monthly", utc(2026, 6, 3, 10, 20), utc(2026, 7, 1, 0, 0)),
        ("@yearly", utc(2026, 6, 3, 10, 20), utc(2027, 1, 1, 0, 0)),
        ("@annually", utc(2026, 6, 3, 10, 20), utc(2027, 1, 1, 0, 0)),
    ],
)
def test_macros_are_spelled_out(macro: str, after: datetime, expected: datetime) -> None:
    assert schedule.next_time(sched(macro), after) == expected


def test_weekly_macro_fires_on_sundays_only() -> None:
    times = upcoming(sched("@weekly"), utc(2026, 6, 3), 4)
    assert times == [utc(2026, 6, 7), utc(2026, 6, 14), utc(2026, 6, 21), utc(2026, 6, 28)]
    assert all(t.weekday() == 6 for t in times)


def test_latest_due_of_nothing_due_is_none() -> None:
    s = sched("@hourly")
    assert schedule.latest_due(s, utc(2026, 6, 3, 10, 0), utc(2026, 6, 3, 10, 59)) == (None, 0)


def test_latest_due_includes_now_and_excludes_after() -> None:
    s = sched("@hourly")
    # (after, now]: 10:00 is `after` (acted on), 11:00 is `now`.
    assert schedule.latest_due(s, utc(2026, 6, 3, 10), utc(2026, 6, 3, 11)) == (
        utc(2026, 6, 3, 11),
        1,
    )


def test_latest_due_counts_the_times_missed_in_a_long_gap() -> None:
    s = sched("@hourly")
    # Down from 10:00 to 15:30 the next day: 11:00 ... 15:00 (+1 day) is 29 times.
    latest, count = schedule.latest_due(s, utc(2026, 6, 3, 10), utc(2026, 6, 4, 15, 30))
    assert latest == utc(2026, 6, 4, 15, 0)
    assert count == 29


def test_latest_due_of_a_daily_schedule_over_a_week() -> None:
    latest, count = schedule.latest_due(sched("@daily"), utc(2026, 6, 1), utc(2026, 6, 8, 1))
    assert (latest, count) == (utc(2026, 6, 8), 7)


def test_latest_due_stops_counting_at_max_steps() -> None:
    s = sched("* * * * *")
    start = utc(2026, 1, 1)
    now = start + timedelta(minutes=schedule.MAX_STEPS + 500)
    latest, count = schedule.latest_due(s, start, now)
    assert count == schedule.MAX_STEPS
    assert latest is not None
    assert latest <= now


# --- time zones ----------------------------------------------------------------------


def test_a_time_zone_moves_the_utc_time_with_summer_time() -> None:
    s = sched("0 9 * * *", "Europe/Paris")
    assert schedule.next_time(s, utc(2026, 1, 10)) == utc(2026, 1, 10, 8, 0)  # CET, +1
    assert schedule.next_time(s, utc(2026, 7, 10)) == utc(2026, 7, 10, 7, 0)  # CEST, +2


def test_a_macro_in_a_time_zone_is_local_midnight() -> None:
    s = sched("@daily", "America/New_York")
    assert schedule.next_time(s, utc(2026, 6, 3, 12)) == utc(2026, 6, 4, 4, 0)  # EDT, -4
    assert schedule.next_time(s, utc(2026, 12, 3, 12)) == utc(2026, 12, 4, 5, 0)  # EST, -5


def test_latest_due_in_a_time_zone() -> None:
    s = sched("30 8 * * *", "Europe/Paris")
    latest, count = schedule.latest_due(s, utc(2026, 6, 1, 12), utc(2026, 6, 3, 12))
    assert (latest, count) == (utc(2026, 6, 3, 6, 30), 2)


# --- daylight-saving changes ---------------------------------------------------------


def test_spring_forward_runs_a_skipped_time_once_at_the_first_minute_after() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    s = sched("30 2 * * *", "America/New_York")
    times = upcoming(s, utc(2026, 3, 7, 12), 3)
    assert times[0] == local(NEW_YORK, 2026, 3, 8, 3, 0).astimezone(UTC) == utc(2026, 3, 8, 7)
    assert times[1:] == [utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)]
    latest, count = schedule.latest_due(s, utc(2026, 3, 8, 4), utc(2026, 3, 8, 20))
    assert (latest, count) == (utc(2026, 3, 8, 7), 1)


def test_spring_forward_hourly_skips_the_missing_hour() -> None:
    s = sched("@hourly", "America/New_York")
    # 01:00 EST (06Z), then 03:00 EDT (07Z): there is no 02:00.
    assert upcoming(s, utc(2026, 3, 8, 5, 30), 3) == [
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 8),
    ]


def test_fall_back_runs_a_repeated_fixed_time_once() -> None:
    # 2026-11-01 in New York: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    s = sched("30 1 * * *", "America/New_York")
    latest, count = schedule.latest_due(s, utc(2026, 10, 31, 12), utc(2026, 11, 1, 12))
    assert (latest, count) == (utc(2026, 11, 1, 5, 30), 1)  # 01:30 EDT only
    assert upcoming(s, utc(2026, 10, 31, 12), 2) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
    ]


def test_fall_back_next_time_is_after_after_inside_the_repeated_hour() -> None:
    s = sched("30 1 * * *", "America/New_York")
    # 06:10Z is 01:10 EST, the second 01:10, after the only run (01:30 EDT, 05:30Z).
    after = utc(2026, 11, 1, 6, 10)
    assert after.astimezone(NEW_YORK).fold == 1
    nxt = schedule.next_time(s, after)
    assert nxt > after, f"next_time({after}) = {nxt}, which is not after it"
    assert nxt == utc(2026, 11, 2, 6, 30)


def test_fall_back_latest_due_finds_nothing_before_after() -> None:
    s = sched("30 1 * * *", "America/New_York")
    # (01:05 EST, 01:20 EST] holds no run: 01:30 EDT was an hour before.
    assert schedule.latest_due(s, utc(2026, 11, 1, 6, 5), utc(2026, 11, 1, 6, 20)) == (None, 0)


def test_fall_back_hourly_runs_in_both_one_oclocks() -> None:
    s = sched("@hourly", "America/New_York")
    times = upcoming(s, utc(2026, 11, 1, 4, 30), 4)
    assert times == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 8),
    ]
    one_am = [t.astimezone(NEW_YORK) for t in times[:2]]
    assert [(t.hour, t.utcoffset()) for t in one_am] == [
        (1, timedelta(hours=-4)),  # 01:00 EDT
        (1, timedelta(hours=-5)),  # 01:00 EST
    ]
    latest, count = schedule.latest_due(s, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 6, 30))
    assert (latest, count) == (utc(2026, 11, 1, 6), 2)


# --- invalid schedules ---------------------------------------------------------------


def test_a_minute_out_of_range_is_invalid_naming_cron() -> None:
    s = sched("61 * * * *")  # the schema's shape allows it; only parsing finds it
    with pytest.raises(InvalidSchedule) as caught:
        schedule.check(s)
    assert str(caught.value).startswith("cron: '61 * * * *'")
    with pytest.raises(InvalidSchedule, match=r"^cron: "):
        schedule.next_time(s, utc(2026, 1, 1))
    with pytest.raises(InvalidSchedule, match=r"^cron: "):
        schedule.latest_due(s, utc(2026, 1, 1), utc(2026, 1, 2))


def test_a_day_that_never_comes_is_invalid() -> None:
    with pytest.raises(InvalidSchedule, match=r"^cron: '0 0 30 2 \*'"):
        schedule.check(sched("0 0 30 2 *"))


def test_six_fields_are_rejected_by_the_api_at_cron() -> None:
    with pytest.raises(ValidationError) as caught:
        sched("0 0 * * * *")
    assert [line.split(":")[0] for line in api.describe_errors(caught.value)] == ["cron"]


def test_six_fields_are_an_invalid_schedule() -> None:
    # Past the schema (an object stored before it had the pattern): cron has five fields.
    s = Schedule.model_construct(cron="0 0 * * * *", time_zone=None)
    with pytest.raises(InvalidSchedule, match=r"^cron: "):
        schedule.check(s)


def test_an_unknown_time_zone_is_invalid_naming_time_zone() -> None:
    s = sched("@daily", "Mars/Olympus_Mons")
    with pytest.raises(InvalidSchedule) as caught:
        schedule.check(s)
    assert str(caught.value) == "timeZone: unknown time zone 'Mars/Olympus_Mons'"
    with pytest.raises(InvalidSchedule, match=r"^timeZone: "):
        schedule.day_of(s, utc(2026, 1, 1))


def test_valid_schedules_check() -> None:
    for s in (sched("@weekly"), sched("0 9 * * MON-FRI", "Europe/Paris"), sched("*/5 * * * *")):
        schedule.check(s)  # no exception


# --- calendar days -------------------------------------------------------------------


def test_day_of_is_the_day_in_the_schedule_zone_else_utc() -> None:
    when = utc(2026, 6, 2, 2, 0)  # 22:00 EDT on 06-01, 04:00 CEST on 06-02
    assert schedule.day_of(sched("@daily", "America/New_York"), when) == "2026-06-01"
    assert schedule.day_of(sched("@daily", "Europe/Paris"), when) == "2026-06-02"
    assert schedule.day_of(sched("@daily"), when) == "2026-06-02"
    assert schedule.day_of(None, when) == "2026-06-02"
    assert schedule.day_of(None, utc(2026, 6, 1, 23, 59)) == "2026-06-01"


def test_next_day_is_the_next_local_midnight() -> None:
    ny = sched("@daily", "America/New_York")
    assert schedule.next_day(ny, utc(2026, 6, 2, 2, 0)) == utc(2026, 6, 2, 4, 0)
    assert schedule.next_day(ny, utc(2026, 6, 2, 4, 0)) == utc(2026, 6, 3, 4, 0)
    assert schedule.next_day(None, utc(2026, 6, 2, 2, 0)) == utc(2026, 6, 3, 0, 0)
    paris = sched("@daily", "Europe/Paris")
    assert schedule.next_day(paris, utc(2026, 6, 2, 2, 0)) == utc(2026, 6, 2, 22, 0)


def test_next_day_across_daylight_saving_changes() -> None:
    ny = sched("@daily", "America/New_York")
    # Spring: the day after 2026-03-08 starts at 00:00 EDT.
    assert schedule.next_day(ny, utc(2026, 3, 8, 12)) == utc(2026, 3, 9, 4)
    # The evening before: midnight is still EST.
    assert schedule.next_day(ny, utc(2026, 3, 8, 3)) == utc(2026, 3, 8, 5)
    # Autumn: the day after 2026-11-01 starts at 00:00 EST (the day lasted 25 hours).
    assert schedule.next_day(ny, utc(2026, 11, 1, 12)) == utc(2026, 11, 2, 5)
    assert schedule.next_day(ny, utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 2, 5)  # 01:30 EST
    # The evening before: midnight is still EDT.
    assert schedule.next_day(ny, utc(2026, 11, 1, 3)) == utc(2026, 11, 1, 4)
