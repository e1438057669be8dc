"""Schedule expressions: when a time trigger fires.

`schedule_interval` accepts
- `@once`: one run, at `start_time` (or as soon as the trigger is active);
- `@hourly`, `@daily`, `@weekly` (Mondays, as in Mage), `@monthly`, `@yearly`: calendar
  boundaries in the trigger's time zone (minute 0, midnight, Monday midnight, the 1st);
- a cron expression (`*/5 * * * *`; 5 fields, or 6 with seconds last), in the time zone;
- a fixed interval: `every 15m`, `every 1h30m`, `every 30s`, `every 2d` (units s, m, h, d, w),
  or an integer number of seconds (`schedule_interval: 900`). Intervals are counted from
  `start_time` (or from when the trigger was enabled) and ignore the time zone.

Every function takes and returns aware UTC datetimes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 1",  # Mage's weeks start on Monday
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_TINY = timedelta(microseconds=1)
# Longer intervals overflow datetime arithmetic (timedelta tops out at 999,999,999 days).
MAX_INTERVAL_SECONDS = 100 * 366 * 86400.0


class ScheduleError(ValueError):
    """An invalid schedule_interval / timezone."""


def parse_interval(text: Any) -> timedelta | None:
    """`every 15m` / `every 1h30m` / 900 / '900' -> timedelta; None if `text` is not one."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    elif isinstance(text, str):
        s = text.strip().lower()
        if s.isdigit():
            seconds = float(s)
        elif s.startswith("every"):
            rest = s[len("every"):].strip()
            pos, seconds = 0, 0.0
            for m in _PART.finditer(rest):
                if rest[pos:m.start()].strip():
                    raise ScheduleError(f"cannot read interval {text!r}")
                unit = _UNITS.get(m.group(2))
                if unit is None:
                    raise ScheduleError(
                        f"unknown unit {m.group(2)!r} in {text!r}; use s, m, h, d or w (e.g. 'every 15m')"
                    )
                seconds += float(m.group(1)) * unit
                pos = m.end()
            if not rest or rest[pos:].strip():
                raise ScheduleError(f"cannot read interval {text!r}; write e.g. 'every 15m' or 'every 1h30m'")
        else:
            return None
    else:
        return None
    if not seconds > 0:  # (also NaN)
        raise ScheduleError(f"interval {text!r} must be longer than 0 seconds")
    if seconds > MAX_INTERVAL_SECONDS:
        raise ScheduleError(f"interval {text!r} is too large: at most 100 years ({MAX_INTERVAL_SECONDS:.0f} s)")
    return timedelta(seconds=seconds)


def get_timezone(name: Any) -> tzinfo:
    if name in (None, "", "UTC", "utc", "Etc/UTC"):
        return timezone.utc
    if not isinstance(name, str):
        raise ScheduleError(f"timezone must be an IANA name such as 'Europe/Amsterdam', not {name!r}")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone {name!r}; use an IANA name such as 'Europe/Amsterdam'") from None


@dataclass
class Schedule:
    """A parsed schedule. `anchor` is where fixed intervals are counted from."""

    kind: str  # once | cron | interval
    expression: str | None = None
    step: timedelta | None = None
    tz: tzinfo = timezone.utc
    anchor: datetime | None = None
    _iter: Any = None  # (croniter, last input, last output)

    # -- points ---------------------------------------------------------------------------
    def next_after(self, t: datetime) -> datetime | None:
        """The first point strictly after `t` (None for @once)."""
        if self.kind == "once":
            return None
        if self.kind == "interval":
            anchor = self.anchor or t
            n = (t - anchor) // self.step
            point = anchor + (n + 1) * self.step
            while point <= t:  # float rounding of huge spans
                point += self.step
            return point
        return self._cron_next(t)

    def first_at_or_after(self, t: datetime) -> datetime | None:
        if self.kind == "once":
            return self.anchor or t
        return self.next_after(t - _TINY)

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        if self.kind == "once":
            point = self.anchor
            return point if point is not None and point <= t else None
        if self.kind == "interval":
            anchor = self.anchor or t
            if t < anchor:
                return None
            return anchor + ((t - anchor) // self.step) * self.step
        from croniter import croniter

        local = (t + _TINY).astimezone(self.tz)
        return croniter(self.expression, local).get_prev(datetime).astimezone(timezone.utc)

    def _cron_next(self, t: datetime) -> datetime:
        # Memo of the last call, and stepping forward from the value it returned: ~5x
        # cheaper than building a croniter each time. The scheduler computes the point
        # after each trigger's cursor ahead of time, so firing it is a memo hit.
        cached = self._iter
        if cached is not None and cached[1] == t:
            return cached[2]
        if cached is not None and cached[2] == t:
            it = cached[0]
            value = it.get_next(datetime).astimezone(timezone.utc)
        else:
            from croniter import croniter

            it = croniter(self.expression, t.astimezone(self.tz))
            value = it.get_next(datetime).astimezone(timezone.utc)
        self._iter = (it, t, value)
        return value


def parse_schedule(
    schedule_interval: Any,
    *,
    timezone_name: Any = None,
    anchor: datetime | None = None,
) -> Schedule:
    """Parse a time trigger's `schedule_interval` (see the module docstring)."""
    tz = get_timezone(timezone_name)
    if schedule_interval is None or (isinstance(schedule_interval, str) and not schedule_interval.strip()):
        raise ScheduleError("a time trigger needs a schedule_interval (@daily, a cron expression, 'every 15m', ...)")
    if isinstance(schedule_interval, str):
        text = schedule_interval.strip()
        low = text.lower()
        if low == "@once":
            return Schedule("once", tz=tz, anchor=anchor)
        if low in PRESETS:
            return Schedule("cron", expression=PRESETS[low], tz=tz, anchor=anchor)
        if low.startswith("@"):
            raise ScheduleError(
                f"unsupported schedule_interval {text!r}; use @once, @hourly, @daily, @weekly, "
                "@monthly, a cron expression or 'every <n><s|m|h|d|w>'"
            )
    step = parse_interval(schedule_interval)
    if step is not None:
        return Schedule("interval", step=step, tz=tz, anchor=anchor)
    if not isinstance(schedule_interval, str):
        raise ScheduleError(f"schedule_interval must be a string or a number of seconds, not {schedule_interval!r}")
    from croniter import croniter

    text = " ".join(schedule_interval.split())
    if not croniter.is_valid(text):
        raise ScheduleError(
            f"invalid cron expression {schedule_interval!r}; expected 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '*/15 * * * *'"
        )
    return Schedule("cron", expression=text, tz=tz, anchor=anchor)
