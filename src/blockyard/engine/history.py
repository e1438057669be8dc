"""The run-history recorder: the event subscriber that writes a run into the database.

The database is whatever the session holds (db/: SQLite through stdlib sqlite3, or
SQLAlchemy); this module only calls its methods (`create_pipeline_run`,
`start_pipeline_run`, `finish_pipeline_run`, `recorder()`), so engine/ never imports
db/. Block runs go through the database's write-behind recorder; a completion is made
durable before a node that reads it starts (one write per wave of ready nodes), so a
crash after that point never executes a completed block again on recovery.

The worker's lease guard subclasses it (orchestration/worker.py): starting and
finishing *its* run then happen only while the worker holds the run's lease.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Any

from blockyard.engine import events as ev
from blockyard.hosts import hostname

log = logging.getLogger("blockyard.engine")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def outcome_metrics(block_type: str, oc: Any) -> dict | None:
    """A block run's `metrics`: its duration, and a sensor's final state and polls."""
    if oc is None:
        return None
    metrics: dict[str, Any] = {"duration": oc.duration}
    if block_type == "sensor":
        state = {"completed": "met", "cancelled": "cancelled"}.get(oc.status, "failed")
        metrics["sensor"] = {"state": state, "polls": oc.attempts}
    return metrics


class RunHistory:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.pid = os.getpid()
        self.hostname = hostname()
        self._rec: Any = None
        # Completions queued but maybe not in the database yet: made durable (one write
        # for all of them) only when a node that reads one of them starts, so a fan-out
        # pays one write per wave, a chain one per block.
        self._unflushed: set[str] = set()
        self._heartbeat: int | None = None

    # --------------------------------------------------------- run rows
    def create_run(self, **fields: Any) -> int:
        """A run started here, not claimed from the queue: no worker lease covers it,
        so this process heartbeats it (a worker fails it when the process is gone)."""
        run_id = self.db.create_pipeline_run(
            status="running", pid=self.pid, hostname=self.hostname, **fields
        )
        from blockyard.engine import heartbeat

        heartbeat.register(self.db, run_id)
        self._heartbeat = run_id
        return run_id

    def start_run(self, run_id: int, blocks: list[str]) -> None:
        """A queued run (scheduler, API, retry, resume) is now executed by this process."""
        self.db.start_pipeline_run(run_id, blocks, pid=self.pid, hostname=self.hostname)

    def finish_run(self, run_id: int, status: str, error: Any, error_details: Any) -> None:
        self.db.finish_pipeline_run(run_id, status, error=error, error_details=error_details)

    # -------------------------------------------------------- subscriber
    @property
    def rec(self) -> Any:
        if self._rec is None:
            self._rec = self.db.recorder()
        return self._rec

    def __call__(self, event: ev.RunEvent) -> None:
        kind = type(event)
        if kind is ev.BlockStarted:
            # The upstream's completion alone: one statement, no BEGIN/COMMIT (a
            # single-row write); 'running' goes with the recorder's next batch.
            if self._unflushed and not self._unflushed.isdisjoint(event.upstream):
                self.flush()
            self.rec.update_block_run(event.run_id, event.node, status="running", started_at=_now())
        elif kind is ev.BlockFinished:
            self._block_finished(event)
        elif isinstance(event, ev.NodeCreated):
            self.rec.add_block_run(
                event.run_id, event.node, status="initial",
                base_block_uuid=event.block, dynamic_index=event.dynamic_index,
            )
        elif isinstance(event, ev.FanOutFinished):
            self.rec.update_block_run(event.run_id, event.block, status=str(event.status))
        elif isinstance(event, ev.SensorWaiting):
            info = {"state": "waiting", "polls": event.polls, "poke_interval": event.poke_interval}
            self.rec.update_block_run(event.run_id, event.node, metrics={"sensor": info})
        elif isinstance(event, ev.RunFinished):
            try:
                if self._rec is not None:
                    self._rec.close()
                self.finish_run(event.run_id, str(event.status), event.error, event.error_details)
            finally:
                if self._heartbeat is not None:
                    from blockyard.engine import heartbeat

                    heartbeat.unregister(self._heartbeat)

    def _block_finished(self, e: ev.BlockFinished) -> None:
        oc = e.outcome
        fields: dict[str, Any]
        if oc is not None:  # the block ran
            fields = {
                "status": str(e.status), "attempts": oc.attempts,
                "completed_at": oc.completed_at, "error": oc.error,
                "traceback": oc.traceback, "output_ref": oc.output_ref,
                "digest": oc.digest, "tests": list(e.tests) or None,
                "metrics": e.metrics, "log_path": oc.log_path,
            }
            if oc.started_at:
                fields["started_at"] = oc.started_at
        elif e.cache_hit:  # stored outputs reused (cache hit, or an earlier attempt's)
            now = _now()
            fields = {
                "status": str(e.status), "cache_hit": True, "output_ref": e.output_ref,
                "digest": e.digest, "started_at": now, "completed_at": now, "attempts": 0,
            }
        else:  # settled without running
            fields = {"status": str(e.status)}
            if e.error:
                fields["error"] = e.error
        if e.cache_key and e.status == "completed":
            fields["cache_key"] = e.cache_key
        self.rec.update_block_run(e.run_id, e.node, **fields)
        if e.status == "completed":
            self._unflushed.add(e.node)

    def abandon(self) -> None:
        """The run loop raised: stop heartbeating the run, so that recovery (a worker
        noticing the silence) fails it; write what was queued if possible."""
        if self._heartbeat is not None:
            from blockyard.engine import heartbeat

            heartbeat.unregister(self._heartbeat)
        if self._rec is not None:
            try:
                self._rec.close()
            except Exception:  # the database may be why the run failed
                pass

    def flush(self) -> None:
        self._unflushed.clear()
        try:
            self.rec.write_now()
        except Exception as exc:  # the run goes on; its history may be incomplete
            log.warning("run history: %s", exc)
