"""Orchestration: triggers (YAML <-> table), the scheduler with a controllable clock,
the run queue (idempotency, cancel, retry) and backfills — on SQLite and PostgreSQL.

Time is driven by a fake clock: no test sleeps to wait for a schedule. Workers'
fixtures and the real-process tests are in test_orchestration_worker.py.
"""
from __future__ import annotations

import sys
import textwrap
import threading
import types
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from wsbuilder import block, write_pipeline

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t

    def advance(self, **kw) -> datetime:
        self.t += timedelta(**kw)
        return self.t


@dataclass
class Env:
    root: Path
    db: object
    url: str
    project: str
    backend: str

    def pipeline(self, name: str, blocks: list[dict] | None = None, **kw) -> str:
        if blocks is None:
            blocks = [block("only", """
                @custom
                def only(**kwargs):
                    return kwargs.get('execution_date')
                """)]
        write_pipeline(self.root, self.project, name, blocks, **kw)
        return f"{self.project}/{name}"

    def ws(self):
        from blockyard.project import Workspace

        return Workspace.open(self.root)

    def triggers_path(self, pipeline: str) -> Path:
        return self.root / self.project / "pipelines" / pipeline / "triggers.yaml"

    def write_triggers(self, pipeline: str, entries: list[dict], **top) -> None:
        path = self.triggers_path(pipeline)
        path.write_text(yaml.safe_dump({"triggers": entries, **top}, sort_keys=False))

    def read_triggers(self, pipeline: str) -> dict:
        return yaml.safe_load(self.triggers_path(pipeline).read_text())

    def store(self, clock=None):
        from blockyard.orchestration.triggers import TriggerStore

        return TriggerStore(self.ws(), self.db, clock=clock)

    def scheduler(self, clock=None, **kw):
        from blockyard.orchestration.scheduler import Scheduler

        return Scheduler(self.ws(), self.db, clock=clock, **kw)

    def worker(self, **kw):
        from blockyard.orchestration.worker import Worker

        return Worker(self.ws(), self.db, **kw)

    def runs(self, **kw) -> list[dict]:
        return sorted(self.db.list_pipeline_runs(project=self.project, limit=None, **kw), key=lambda r: r["id"])

    def enqueue(self, pipeline: str, **kw) -> dict:
        from blockyard.orchestration import runs

        return runs.enqueue_run(self.db, project=self.project, pipeline_uuid=pipeline, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def env(request, tmp_path, monkeypatch):
    from blockyard.db import Database

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'orchestration.db'}"
    db = Database(url)
    db.migrate()
    root = tmp_path / "ws"
    root.mkdir()
    # A project name of its own: PostgreSQL tests of one session share a database, and
    # schedulers and workers only look at their workspace's projects.
    e = Env(root=root, db=db, url=url, project=f"p{uuid.uuid4().hex[:8]}", backend=request.param)
    yield e
    db.close()


@pytest.fixture
def notify_calls(monkeypatch):
    """A stand-in blockyard.notify module recording the hook calls."""
    import blockyard

    calls: list[tuple[str, dict]] = []
    fake = types.ModuleType("blockyard.notify")
    fake.notify_run_finished = lambda ws, db, row: calls.append(("finished", row))
    fake.notify_sla_passed = lambda ws, db, row: calls.append(("sla", row))
    monkeypatch.setitem(sys.modules, "blockyard.notify", fake)
    monkeypatch.setattr(blockyard, "notify", fake, raising=False)
    return calls


def dates(runs) -> list[datetime]:
    return [r["execution_date"] for r in runs]


# ------------------------------------------------------------------ schedules
def test_schedule_expressions():
    from blockyard.orchestration.schedules import ScheduleError, parse_interval, parse_schedule

    assert parse_interval("every 15m") == timedelta(minutes=15)
    assert parse_interval("every 1h30m") == timedelta(minutes=90)
    assert parse_interval(900) == parse_interval("900") == timedelta(seconds=900)
    weekly = parse_schedule("@weekly")
    assert weekly.next_after(datetime(2024, 1, 3, tzinfo=UTC)) == datetime(2024, 1, 8, tzinfo=UTC)  # a Monday
    monthly = parse_schedule("@monthly")
    assert monthly.latest_at_or_before(datetime(2024, 3, 15, tzinfo=UTC)) == datetime(2024, 3, 1, tzinfo=UTC)
    # 09:00 in Amsterdam is 08:00 UTC in winter and 07:00 UTC after the DST change (31 March).
    cron = parse_schedule("0 9 * * *", timezone_name="Europe/Amsterdam")
    assert cron.next_after(datetime(2024, 3, 30, 12, tzinfo=UTC)) == datetime(2024, 3, 31, 7, tzinfo=UTC)
    assert cron.next_after(datetime(2024, 3, 29, 12, tzinfo=UTC)) == datetime(2024, 3, 30, 8, tzinfo=UTC)
    for bad in ("@always_on", "every 5 parsecs", "61 * * * *", "", None):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)
    with pytest.raises(ScheduleError, match="unknown timezone"):
        parse_schedule("@daily", timezone_name="Mars/Olympus")


# ------------------------------------------------------------ time triggers
def test_hourly_trigger_fires_on_time_and_once_per_execution_time(env):
    env.pipeline("pipe")
    clock = FakeClock(T0 + timedelta(minutes=20))
    store = env.store(clock)
    trig = store.create({"pipeline": f"{env.project}/pipe", "name": "hourly", "schedule_interval": "@hourly"})
    assert trig["next_run_at"] == T0 + timedelta(hours=1)
    sched = env.scheduler(clock)
    assert sched.tick(clock()) == []
    # The scheduler sleeps until exactly the next execution time ...
    assert sched.next_due() == T0 + timedelta(hours=1)
    assert sched.tick(T0 + timedelta(minutes=59, seconds=59, microseconds=999_999)) == []
    # ... and fires at it, once.
    fired = sched.tick(T0 + timedelta(hours=1))
    assert dates(fired) == [T0 + timedelta(hours=1)]
    assert fired[0]["status"] == "queued" and fired[0]["trigger_id"] == trig["id"]
    assert sched.tick(T0 + timedelta(hours=1, seconds=1)) == []
    assert sched.next_due() == T0 + timedelta(hours=2)
    assert dates(sched.tick(T0 + timedelta(hours=2, milliseconds=3))) == [T0 + timedelta(hours=2)]
    assert len(env.runs()) == 2


def test_interval_cron_timezone_and_once(env):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    store = env.store(clock)
    ref = f"{env.project}/pipe"
    store.create({"pipeline": ref, "name": "every15", "schedule_interval": "every 15m", "start_time": T0, "variables": {"k": 1}})
    store.create({"pipeline": ref, "name": "every10m_int", "schedule_interval": 600})
    store.create({
        "pipeline": ref, "name": "two_am_amsterdam", "schedule_interval": "0 2 * * *",
        "settings": {"timezone": "Europe/Amsterdam"},
    })
    store.create({"pipeline": ref, "name": "once", "schedule_interval": "@once", "start_time": T0 + timedelta(minutes=10)})
    sched = env.scheduler(clock)
    by_trigger: dict[str, list[datetime]] = {}
    names = {t["id"]: t["name"] for t in store.list()}
    end = T0 + timedelta(hours=3)
    ticks = 0
    # Drive it as run_forever does: sleep until next_due(), tick at exactly that time.
    t = sched.next_due()
    while t is not None and t <= end:
        for run in sched.tick(t):
            by_trigger.setdefault(names[run["trigger_id"]], []).append(run["execution_date"])
        ticks += 1
        t = sched.next_due()
    assert by_trigger["every15"] == [T0 + timedelta(minutes=15 * i) for i in range(13)]
    # No start_time: counted from when it was enabled, first fire one interval later.
    assert by_trigger["every10m_int"] == [T0 + timedelta(minutes=10 * i) for i in range(1, 19)]
    assert by_trigger["two_am_amsterdam"] == [datetime(2024, 1, 1, 1, 0, tzinfo=UTC)]  # 02:00 CET
    assert by_trigger["once"] == [T0 + timedelta(minutes=10)]
    assert ticks == len({d for ds in by_trigger.values() for d in ds})  # no idle wake-ups
    run = next(r for r in env.runs() if r["execution_date"] == T0 + timedelta(minutes=15))
    assert run["variables"] == {"k": 1}
    # @once never fires again, not even after being disabled and enabled.
    once = store.find(env.project, "pipe", "once")
    store.disable(once["id"])
    store.enable(once["id"])
    assert store.get(once["id"])["next_run_at"] is None
    assert not [r for r in sched.tick(end + timedelta(days=1)) if r["trigger_id"] == once["id"]]


def test_inactive_never_fires_and_start_time_is_respected(env):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    env.write_triggers("pipe", [
        {"name": "off", "schedule_type": "time", "schedule_interval": "@hourly", "status": "inactive"},
        {"name": "no_status", "schedule_interval": "@hourly"},  # Mage: inactive by default
        {"name": "later", "schedule_interval": "@hourly", "status": "active",
         "start_time": "2024-01-01 05:30:00"},
    ])
    sched = env.scheduler(clock)
    fired = []
    for h in range(0, 9):
        fired += sched.tick(T0 + timedelta(hours=h, minutes=1))
    later = env.store(clock).find(env.project, "pipe", "later")
    assert {r["trigger_id"] for r in fired} == {later["id"]}
    assert dates(fired) == [T0 + timedelta(hours=h) for h in (6, 7, 8)]


@pytest.mark.parametrize("catchup", [False, True])
def test_catch_up_after_downtime(env, catchup):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    store = env.store(clock)
    trig = store.create({
        "pipeline": f"{env.project}/pipe", "name": "hourly", "schedule_interval": "@hourly",
        "start_time": T0, "settings": {"catchup": catchup},
    })
    sched = env.scheduler(clock)
    assert dates(sched.tick(T0)) == [T0]
    # The scheduler is down from 00:00 to 05:30.
    fired = sched.tick(T0 + timedelta(hours=5, minutes=30))
    if catchup:
        assert dates(fired) == [T0 + timedelta(hours=h) for h in range(1, 6)]
    else:
        assert dates(fired) == [T0 + timedelta(hours=5)]
    assert store.get(trig["id"])["next_run_at"] == T0 + timedelta(hours=6)
    assert dates(sched.tick(T0 + timedelta(hours=6))) == [T0 + timedelta(hours=6)]


def test_catchup_on_first_activation_and_initial_run(env):
    env.pipeline("pipe")
    clock = FakeClock(T0 + timedelta(hours=3, minutes=10))
    store = env.store(clock)
    ref = f"{env.project}/pipe"
    store.create({"pipeline": ref, "name": "catchup", "schedule_interval": "@hourly", "start_time": T0,
                  "settings": {"catchup": True}})
    store.create({"pipeline": ref, "name": "plain", "schedule_interval": "@hourly", "start_time": T0})
    store.create({"pipeline": ref, "name": "initial", "schedule_interval": "@hourly", "start_time": T0,
                  "settings": {"create_initial_pipeline_run": True}})
    names = {t["id"]: t["name"] for t in store.list()}
    fired = env.scheduler(clock).tick(clock())
    got = sorted((names[r["trigger_id"]], r["execution_date"]) for r in fired)
    assert got == sorted(
        [("catchup", T0 + timedelta(hours=h)) for h in range(4)] + [("initial", T0 + timedelta(hours=3))]
    )


def test_skip_if_previous_running(env):
    from blockyard.orchestration import runs

    env.pipeline("pipe")
    clock = FakeClock(T0)
    store = env.store(clock)
    store.create({"pipeline": f"{env.project}/pipe", "name": "t", "schedule_interval": "every 10m", "start_time": T0,
                  "settings": {"skip_if_previous_running": True}})
    sched = env.scheduler(clock)
    first = sched.tick(T0)
    assert len(first) == 1
    assert sched.tick(T0 + timedelta(minutes=10)) == []  # the first run is still queued
    runs.request_cancel(env.db, first[0]["id"])
    assert dates(sched.tick(T0 + timedelta(minutes=20))) == [T0 + timedelta(minutes=20)]


def test_sla_passed_hook_is_called_once(env, notify_calls):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    env.store(clock).create({"pipeline": f"{env.project}/pipe", "name": "t", "schedule_interval": "@hourly",
                             "start_time": T0, "sla": 60})
    sched = env.scheduler(clock)
    run = sched.tick(T0)[0]
    assert run["sla_deadline"] == T0 + timedelta(seconds=60)
    sched.tick(T0 + timedelta(seconds=59))
    assert notify_calls == []
    sched.tick(T0 + timedelta(seconds=61))
    sched.tick(T0 + timedelta(seconds=62))
    assert [(kind, row["id"]) for kind, row in notify_calls] == [("sla", run["id"])]


def test_sla_breach_is_reported_once_between_scheduler_and_worker(env, notify_calls):
    """The scheduler reports unfinished runs past their deadline; a worker reports a run
    that finished late. Both claim the report in the database, so neither repeats it,
    even from a stale copy of the row."""
    from blockyard.orchestration.recovery import check_late_sla

    env.pipeline("pipe")
    seen_late = env.enqueue("pipe", execution_date=T0, sla=60)
    finished_late = env.enqueue("pipe", execution_date=T0, sla=60)
    stale = {r["id"]: dict(r, status="completed", completed_at=T0 + timedelta(seconds=90)) for r in env.runs()}
    env.db.update_pipeline_run(finished_late["id"], status="completed", completed_at=T0 + timedelta(seconds=90))
    reported = env.scheduler(FakeClock(T0)).check_sla(T0 + timedelta(seconds=61))
    assert [r["id"] for r in reported] == [seen_late["id"]]
    worker = env.worker(clock=FakeClock(T0 + timedelta(seconds=95)))
    for _ in range(2):  # both runs, twice, from copies read before any report
        check_late_sla(worker, stale[seen_late["id"]])
        check_late_sla(worker, stale[finished_late["id"]])
    assert [(kind, row["id"]) for kind, row in notify_calls] == [("sla", seen_late["id"]), ("sla", finished_late["id"])]
    assert env.db.get_pipeline_run(finished_late["id"])["sla_notified_at"] == T0 + timedelta(seconds=95)


# ------------------------------------------------------- YAML <-> table sync
def test_yaml_edits_reach_the_table(env):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    store = env.store(clock)
    env.write_triggers("pipe", [{"name": "daily", "schedule_type": "time", "schedule_interval": "@daily",
                                 "status": "active", "variables": {"a": 1}, "sla": 300, "envs": []}])
    (row,) = store.list(pipeline=f"{env.project}/pipe")
    assert row["schedule_interval"] == "@daily" and row["variables"] == {"a": 1} and row["sla"] == 300
    assert row["extra"] == {"envs": []}
    assert row["next_run_at"] == T0  # first execution time >= now
    first_id = row["id"]

    clock.advance(minutes=1)
    env.write_triggers("pipe", [
        {"name": "daily", "schedule_type": "time", "schedule_interval": "*/5 * * * *", "status": "active",
         "variables": {"a": 2}},
        {"name": "bad", "schedule_type": "time", "schedule_interval": "every now and then", "status": "active"},
    ])
    rows = {r["name"]: r for r in store.list()}
    assert rows["daily"]["id"] == first_id  # same trigger, edited
    assert rows["daily"]["schedule_interval"] == "*/5 * * * *" and rows["daily"]["variables"] == {"a": 2}
    assert rows["daily"]["next_run_at"] == T0 + timedelta(minutes=5)
    assert "every now and then" in rows["bad"]["error"] and rows["bad"]["next_run_at"] is None

    # A broken file keeps the triggers as they were.
    env.triggers_path("pipe").write_text("triggers: [name: x\n")
    sync = store.sync()
    assert sync["errors"] and {r["name"] for r in store.list(sync=False)} == {"daily", "bad"}

    env.write_triggers("pipe", [])
    assert store.list() == []
    env.write_triggers("pipe", [{"name": "daily", "schedule_interval": "@daily", "status": "active"}])
    assert [r["name"] for r in store.list()] == ["daily"]
    env.triggers_path("pipe").unlink()
    assert store.list() == []


def test_store_edits_keep_unknown_keys_in_yaml(env):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    path = env.triggers_path("pipe")
    path.write_text(textwrap.dedent("""\
        # written by hand
        triggers:
        - name: nightly
          schedule_type: time
          schedule_interval: '@daily'
          start_time: 2023-06-01 00:00:00
          status: inactive
          envs: [prod]
          custom_owner: data-team
          settings:
            skip_if_previous_running: true
            landing_time_enabled: false
        extra_top_level: keep me
        """))
    store = env.store(clock)
    (row,) = store.list()
    assert row["status"] == "inactive" and row["next_run_at"] is None
    updated = store.update(row["id"], {"status": "active", "variables": {"x": 1}, "settings": {"timeout": 60}})
    assert updated["id"] == row["id"] and updated["status"] == "active"
    assert updated["last_enabled_at"] == T0 and updated["next_run_at"] == T0
    data = env.read_triggers("pipe")
    assert data["extra_top_level"] == "keep me"
    (entry,) = data["triggers"]
    assert entry["envs"] == ["prod"] and entry["custom_owner"] == "data-team"
    assert entry["status"] == "active" and entry["variables"] == {"x": 1}
    assert entry["settings"] == {"skip_if_previous_running": True, "landing_time_enabled": False, "timeout": 60}
    assert list(entry)[:3] == ["name", "schedule_type", "schedule_interval"]  # order kept

    created = store.create({"project": env.project, "pipeline_uuid": "pipe", "name": "api", "schedule_type": "api",
                            "variables": {"source": "webhook"}})
    assert [t["name"] for t in env.read_triggers("pipe")["triggers"]] == ["nightly", "api"]
    assert "token" not in env.read_triggers("pipe")["triggers"][1]  # the generated token stays in the database
    assert created["token"]
    renamed = store.update(created["id"], {"name": "webhook"})
    assert renamed["id"] == created["id"] and renamed["token"] == created["token"]
    store.delete(row["id"])
    data = env.read_triggers("pipe")
    assert [t["name"] for t in data["triggers"]] == ["webhook"] and data["extra_top_level"] == "keep me"
    assert [t["name"] for t in store.list()] == ["webhook"]

    from blockyard.orchestration.triggers import TriggerError

    with pytest.raises(TriggerError, match="already has a trigger"):
        store.create({"pipeline": f"{env.project}/pipe", "name": "webhook", "schedule_type": "api"})
    with pytest.raises(TriggerError, match="cron"):
        store.create({"pipeline": f"{env.project}/pipe", "name": "x", "schedule_interval": "* * *"})


def test_disable_and_enable_never_backfill_the_gap(env):
    env.pipeline("pipe")
    clock = FakeClock(T0)
    store = env.store(clock)
    trig = store.create({"pipeline": f"{env.project}/pipe", "name": "t", "schedule_interval": "@hourly",
                         "start_time": T0, "settings": {"catchup": True}})
    sched = env.scheduler(clock)
    assert len(sched.tick(T0)) == 1
    store.disable(trig["id"])
    assert sched.tick(T0 + timedelta(hours=3)) == []
    clock.set(T0 + timedelta(hours=5, minutes=30))
    enabled = store.enable(trig["id"])
    assert enabled["next_run_at"] == T0 + timedelta(hours=6)
    assert sched.tick(clock()) == []
    assert dates(sched.tick(T0 + timedelta(hours=6))) == [T0 + timedelta(hours=6)]


# ------------------------------------------------------------- API triggers
def test_api_trigger_token_and_variables(env):
    from blockyard.orchestration import runs
    from blockyard.orchestration.triggers import verify_token

    env.pipeline("pipe")
    store = env.store()
    trig = store.create({"pipeline": f"{env.project}/pipe", "name": "hook", "schedule_type": "api",
                         "variables": {"a": 1, "b": 1}, "settings": {"timeout": 30}, "sla": 10})
    assert len(trig["token"]) >= 24 and trig["next_run_at"] is None
    assert verify_token(trig, trig["token"])
    wrong = trig["token"][:-1] + ("A" if trig["token"][-1] != "A" else "B")
    assert not verify_token(trig, wrong)
    assert not verify_token(trig, "") and not verify_token(trig, None)
    assert not verify_token({"token": None}, "anything")
    run = runs.enqueue_run(env.db, project=env.project, pipeline_uuid="pipe", trigger_id=trig["id"],
                           variables={"b": 2})
    assert run["variables"] == {"a": 1, "b": 2}
    assert run["settings"] == {"timeout": 30} and run["sla_deadline"] is not None
    # A token written in the YAML is used as is.
    data = env.read_triggers("pipe")
    data["triggers"][0]["token"] = "s3cret-token"
    env.triggers_path("pipe").write_text(yaml.safe_dump(data))
    (row,) = store.list()
    assert verify_token(row, "s3cret-token") and not verify_token(row, trig["token"])


# ------------------------------------------------------------------ sensors
def test_sensor_trigger_queues_a_run_whose_sensor_polls_in_the_worker(env, tmp_path):
    counter = tmp_path / "polls.txt"
    env.pipeline("sensed", [
        block("wait_for_data", f"""
            from pathlib import Path
            @sensor
            def wait_for_data(**kwargs):
                p = Path({str(counter)!r})
                n = int(p.read_text()) + 1 if p.exists() else 1
                p.write_text(str(n))
                return n >= 3
            """, type="sensor", config={"poke_interval": 0.2}),
        block("after", f"""
            from pathlib import Path
            @custom
            def after(*args, **kwargs):
                return Path({str(counter)!r}).read_text()
            """, upstream=["wait_for_data"]),
    ])
    clock = FakeClock(T0)
    trig = env.store(clock).create({"pipeline": f"{env.project}/sensed", "name": "when_ready",
                                    "schedule_type": "event", "settings": {"poke_interval": 10}})
    sched = env.scheduler(clock)
    fired = sched.tick(T0)
    assert len(fired) == 1 and fired[0]["trigger_id"] == trig["id"]
    assert not counter.exists()  # the scheduler queued the run without calling the sensor
    # While its run is unfinished no other run is queued.
    assert sched.tick(T0 + timedelta(seconds=20)) == []
    worker = env.worker()
    worker.run_once()
    assert worker.wait_idle(60)
    assert env.db.get_pipeline_run(fired[0]["id"])["status"] == "completed"
    blocks = {b["block_uuid"]: b for b in env.db.get_block_runs(fired[0]["id"])}
    assert blocks["wait_for_data"]["metrics"]["sensor"] == {"state": "met", "polls": 3}
    assert counter.read_text() == "3" and blocks["after"]["status"] == "completed"
    # Once it finished, the next due time queues the next run.
    again = sched.tick(T0 + timedelta(seconds=30))
    assert len(again) == 1 and again[0]["id"] != fired[0]["id"]


# ------------------------------------------------- two schedulers, one fire
def test_two_schedulers_fire_each_execution_time_exactly_once(env):
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr
    from blockyard.db.schema import pipeline_schedules as ps

    env.pipeline("pipe")
    env.write_triggers("pipe", [
        {"name": f"t{i}", "schedule_interval": "every 1m", "start_time": T0.isoformat(), "status": "active"}
        for i in range(40)
    ])
    clock = FakeClock(T0)
    a, b = env.scheduler(clock), env.scheduler(clock)
    for minute in range(5):
        now = T0 + timedelta(minutes=minute)
        barrier = threading.Barrier(2)
        results: dict[str, list] = {}

        def run(name, sched):
            barrier.wait()
            results[name] = sched.tick(now)

        threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results["a"]) + len(results["b"]) == 40, minute
        assert len(env.runs()) == 40 * (minute + 1)
    # A scheduler with a stale cursor (e.g. it crashed before saving it) cannot fire again.
    with env.db.engine.begin() as conn:
        conn.execute(sa.update(ps).where(ps.c.project == env.project).values(next_run_at=T0 + timedelta(minutes=4)))
    assert a.tick(T0 + timedelta(minutes=4, seconds=30)) == []
    with env.db.engine.connect() as conn:
        dupes = conn.execute(
            sa.select(pr.c.trigger_id, pr.c.execution_date)
            .where(pr.c.project == env.project)
            .group_by(pr.c.trigger_id, pr.c.execution_date)
            .having(sa.func.count() > 1)
        ).all()
    assert dupes == [] and len(env.runs()) == 200


def test_scheduler_heartbeat_age(tmp_path):
    from blockyard.db import Database
    from blockyard.orchestration.scheduler import Scheduler
    from blockyard.orchestration.status import scheduler_heartbeat_age
    from blockyard.project import Workspace

    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [block("a", "@custom\ndef a(**k):\n    return 1\n")])
    db = Database(tmp_path / "hb.db")
    db.migrate()
    assert scheduler_heartbeat_age(db) is None
    Scheduler(Workspace.open(root), db).tick()
    age = scheduler_heartbeat_age(db)
    assert age is not None and 0 <= age < 60


# ------------------------------------------------------------------ the queue
def test_idempotency_keys(env):
    env.pipeline("pipe")
    key = f"{env.project}-req"  # keys are global to the database, which PostgreSQL tests share
    first = env.enqueue("pipe", variables={"a": 1}, idempotency_key=f"{key}-1")
    again = env.enqueue("pipe", variables={"a": 2}, idempotency_key=f"{key}-1")
    other = env.enqueue("pipe", idempotency_key=f"{key}-2")
    assert again["id"] == first["id"] and again["variables"] == {"a": 1}
    assert other["id"] != first["id"]
    # Concurrent requests with one key: one run.
    barrier = threading.Barrier(8)
    ids = []

    def go():
        barrier.wait()
        ids.append(env.enqueue("pipe", idempotency_key=f"{key}-3")["id"])

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(env.runs()) == 3


def test_request_cancel(env):
    from blockyard.orchestration import runs

    env.pipeline("pipe")
    queued = env.enqueue("pipe")
    row = runs.request_cancel(env.db, queued["id"])
    assert row["status"] == "cancelled" and row["completed_at"] is not None
    running = env.enqueue("pipe")
    (claimed,) = env.worker(concurrency=1).claim()
    assert claimed["id"] == running["id"]
    row = runs.request_cancel(env.db, running["id"])
    assert row["status"] == "running" and row["cancel_requested_at"] is not None
    with pytest.raises(runs.RunNotFound):
        runs.request_cancel(env.db, 10**9)


def test_retry_incomplete_reuses_completed_blocks(env, tmp_path):
    from blockyard.orchestration import runs

    flag = tmp_path / "fail.flag"
    flag.write_text("1")
    env.pipeline("pipe", [
        block("load", """
            @data_loader
            def load(**kwargs):
                return kwargs['n'] * 2
            """, type="data_loader"),
        block("train", f"""
            import os
            @transformer
            def train(x, **kwargs):
                if os.path.exists({str(flag)!r}):
                    raise RuntimeError('flaky')
                return x + 1
            """, type="transformer", upstream=["load"]),
    ])
    worker = env.worker(concurrency=1)
    failed = env.enqueue("pipe", variables={"n": 21})
    worker.run_once()
    worker.wait_idle(60)
    row = env.db.get_pipeline_run(failed["id"])
    assert row["status"] == "failed" and "flaky" in row["error"]
    with pytest.raises(runs.RunStateError):
        runs.retry_incomplete(env.db, 10**9) if False else runs.retry_incomplete(env.db, env.enqueue("pipe")["id"])
    runs.request_cancel(env.db, env.runs(status="queued")[0]["id"])
    flag.unlink()
    retry = runs.retry_incomplete(env.db, failed["id"])
    assert retry["status"] == "queued" and retry["retry_of"] == failed["id"]
    assert retry["variables"] == {"n": 21} and retry["execution_date"] == row["execution_date"]
    worker.run_once()
    worker.wait_idle(60)
    assert env.db.get_pipeline_run(retry["id"])["status"] == "completed"
    blocks = {b["block_uuid"]: b for b in env.db.get_block_runs(retry["id"])}
    assert blocks["load"]["cache_hit"] is True and blocks["train"]["cache_hit"] is False
    assert blocks["train"]["status"] == "completed"
    with pytest.raises(runs.RunStateError, match="nothing left"):
        runs.retry_incomplete(env.db, retry["id"])


# ------------------------------------------------------------------ backfills
def test_backfill_creates_one_run_per_interval_with_interval_kwargs(env, notify_calls):
    from blockyard.session import Session
    from blockyard.orchestration import backfills

    env.pipeline("pipe", [block("report", """
        @custom
        def report(**kwargs):
            return {'start': kwargs['interval_start_datetime'], 'end': kwargs['interval_end_datetime'],
                    'ds': kwargs['ds'], 'region': kwargs['region']}
        """)])
    bf = backfills.create_backfill(env.db, env.ws(), project=env.project, pipeline_uuid="pipe",
                                   start="2024-01-01", end="2024-01-07", interval="day", variables={"region": "eu"})
    assert bf["total_runs"] == 7 and bf["queued"] == 7 and bf["status"] == "running" and bf["progress"] == 0
    queued = env.runs()
    assert dates(queued) == [T0 + timedelta(days=i) for i in range(7)]
    assert queued[2]["variables"] == {
        "region": "eu",
        "interval_start_datetime": "2024-01-03T00:00:00+00:00",
        "interval_end_datetime": "2024-01-04T00:00:00+00:00",
    }
    worker = env.worker(concurrency=3)
    while worker.run_once():
        worker.wait_idle(60)
    worker.wait_idle(60)
    done = backfills.get(env.db, bf["id"])
    assert done["status"] == "completed" and done["completed"] == 7 and done["progress"] == 1.0
    store = Session(env.ws()).store
    outputs = [store.load_output(r["id"], "report", 0) for r in env.runs()]
    assert outputs[0] == {"start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00+00:00",
                          "ds": "2024-01-01", "region": "eu"}
    assert [o["ds"] for o in outputs] == [f"2024-01-0{i}" for i in range(1, 8)]
    assert sorted(row["id"] for kind, row in notify_calls if kind == "finished") == [r["id"] for r in env.runs()]
    assert [b["id"] for b in backfills.list(env.db, project=env.project)] == [bf["id"]]

    months = backfills.intervals(datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 4, 30, tzinfo=UTC), "month")
    assert [s.date().isoformat() for s, _ in months] == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]
    assert len(backfills.intervals(T0, T0 + timedelta(hours=23), "hour")) == 24


def test_backfill_cancel(env):
    from blockyard.orchestration import backfills

    env.pipeline("pipe")
    bf = backfills.create_backfill(env.db, env.ws(), project=env.project, pipeline_uuid="pipe",
                                   start="2024-01-01T00:00", end="2024-01-01T05:00", interval="hour")
    (claimed,) = env.worker(concurrency=1).claim()  # one run is running (held, not executed)
    cancelled = backfills.cancel(env.db, bf["id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] == 5 and cancelled["running"] == 1
    assert env.db.get_pipeline_run(claimed["id"])["cancel_requested_at"] is not None
    assert all(r["status"] == "cancelled" for r in env.runs() if r["id"] != claimed["id"])
    assert env.worker(concurrency=4).claim() == []
    with pytest.raises(backfills.BackfillError):
        backfills.create_backfill(env.db, env.ws(), project=env.project, pipeline_uuid="pipe",
                                  start="2024-01-02", end="2024-01-01", interval="day")
    with pytest.raises(backfills.BackfillError, match="unknown interval"):
        backfills.create_backfill(env.db, env.ws(), project=env.project, pipeline_uuid="pipe",
                                  start="2024-01-01", end="2024-01-02", interval="fortnight")
