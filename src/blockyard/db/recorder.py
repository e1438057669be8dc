"""Write-behind, batched recording of block-run changes.

The engine calls `add_block_run` / `update_block_run` from any thread; they only
queue the change and return. A background thread writes what is queued every
`interval` seconds (20 ms by default) in one transaction:

* pending updates of the same (run_id, block_uuid) are merged (later values win);
* updates of a row whose insert is still pending are folded into the insert;
* inserts with the same column set, and updates with the same column set, are
  each sent as one executemany.

`flush()` returns once everything queued before it is written; `close()` flushes
and stops the thread. A failed write is never dropped silently: the error is kept
and raised (as `RecorderError`) from the next `flush()` or `close()`.

The queueing and batching here import no SQLAlchemy: the write itself is done by
a `BlockRunWriter` that the database supplies (`db.block_run_writer()`), through
SQLAlchemy Core, or stdlib sqlite3 on the fast path for a SQLite file.
"""
from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any, Iterable, Protocol, Sequence

from blockyard import masking
from blockyard.errors import BlockyardError

Key = tuple[int, str]
# (is_insert, rows): rows sharing one column set, to be sent as one executemany.
# Insert rows are block_runs rows; update rows hold `_run_id`, `_block_uuid` and
# the columns to set.
Group = tuple[bool, list[dict[str, Any]]]


class BlockRunWriter(Protocol):
    def write(self, groups: Sequence[Group]) -> None:
        """Execute the groups in order, all in one transaction (all or nothing)."""

    def is_row_error(self, exc: BaseException) -> bool:
        """True if `exc` (raised by `write`) concerns one row rather than the database:
        a duplicate insert, a run that no longer exists, a value that cannot be
        stored. The other changes of the failed write are then retried one by one;
        anything else (database unreachable, locked, read-only) would fail for every
        row alike."""

    def close(self) -> None:
        """Release what the writer holds (called by the recorder thread as it ends)."""


class _RecordingDatabase(Protocol):
    def check_block_run_fields(self, fields: dict[str, Any]) -> None: ...

    def block_run_writer(self) -> BlockRunWriter: ...


class RecorderError(BlockyardError):
    """Block-run changes could not be written to the run-history database."""

    def __init__(self, message: str, *, lost: int, original: BaseException) -> None:
        super().__init__(
            message,
            hint="the run's block statuses in the database may be incomplete; "
            "check that the database is reachable and not read-only",
        )
        self.lost = lost
        self.original = original


# A queued change: (is_insert, fields). The fields dict is the caller's **kwargs (a
# fresh dict per call), owned by the recorder from then on; later changes of the same
# row are merged into it.
_Op = tuple[bool, dict[str, Any]]


_live: "weakref.WeakSet[Recorder]" = weakref.WeakSet()
_atexit_registered = False


def _close_all_at_exit() -> None:
    for recorder in list(_live):
        try:
            recorder.close()
        except Exception:
            pass


class Recorder:
    def __init__(self, db: "_RecordingDatabase", interval: float = 0.02) -> None:
        global _atexit_registered
        self._db = db
        self._writer: BlockRunWriter = db.block_run_writer()
        self._check_fields = db.check_block_run_fields
        self._interval = interval
        # A plain Lock (`with self._lock` is a C call; Condition.__enter__ is Python)
        # guards the queue; the condition on it is only for waiting.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Held while a batch is written (by the thread or by write_now), so that
        # batches reach the database in the order they were queued.
        self._write_lock = threading.Lock()
        # Ordered batches; within a batch each key has one op. A second insert of a
        # key already in the newest batch opens a new batch, which keeps order.
        self._batches: list[dict[Key, _Op]] = []
        self._queued = 0  # changes queued so far
        self._written = 0  # changes handled (written or failed) so far
        self._flush_requested = False
        self._waiters = 0  # threads blocked in flush()
        # True while the thread sleeps until the next change: only that change wakes it
        # (waking it on every change would cost a GIL hand-off each time).
        self._idle = False
        self._closing = False
        self._closed = False
        self._error: RecorderError | None = None
        self._thread = threading.Thread(target=self._run, name="blockyard-db-recorder", daemon=True)
        self._thread.start()
        _live.add(self)
        if not _atexit_registered:
            atexit.register(_close_all_at_exit)
            _atexit_registered = True

    # ------------------------------------------------------------ public API
    def add_block_run(
        self,
        run_id: int,
        block_uuid: str,
        status: str = "initial",
        *,
        parent_uuid: str | None = None,
        **fields: Any,
    ) -> None:
        """Queue the insert of a block run (e.g. a dynamic child created during the run).
        `parent_uuid` is stored as `base_block_uuid` (default: `block_uuid`)."""
        fields["status"] = status
        if "base_block_uuid" not in fields:
            fields["base_block_uuid"] = parent_uuid if parent_uuid is not None else block_uuid
        fields.setdefault("attempts", 0)
        fields.setdefault("cache_hit", False)
        self._check_fields(fields)
        self._enqueue((int(run_id), block_uuid), True, fields)

    def update_block_run(self, run_id: int, block_uuid: str, **fields: Any) -> None:
        """Queue an update of some columns of a block run."""
        if not fields:
            return
        if masking.active():  # secret values never reach the run history
            for name in ("error", "traceback"):
                if isinstance(fields.get(name), str):
                    fields[name] = masking.mask(fields[name])
        self._check_fields(fields)
        self._enqueue((int(run_id), block_uuid), False, fields)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every change queued before this call is written, then raise
        the error of any failed write since the last flush."""
        with self._cond:
            target = self._queued
            if self._written < target:
                if not self._thread.is_alive():
                    raise RuntimeError("the recorder is closed; nothing can be flushed any more")
                self._flush_requested = True
                self._cond.notify_all()
                deadline = None if timeout is None else time.monotonic() + timeout
                self._waiters += 1
                try:
                    while self._written < target:
                        if not self._thread.is_alive():  # pragma: no cover - writer crashed
                            raise RuntimeError("the recorder thread stopped unexpectedly")
                        wait = 0.5
                        if deadline is not None:
                            wait = min(wait, deadline - time.monotonic())
                            if wait <= 0:
                                raise TimeoutError(f"recorder flush did not finish in {timeout} s")
                        self._cond.wait(wait)
                finally:
                    self._waiters -= 1
        self._raise_error()

    def write_now(self) -> None:
        """Write everything queued so far on the calling thread, then raise the error of
        any failed write. Cheaper than `flush()` for one small batch: no hand-off to the
        recorder thread and back (the runner makes a completion durable this way before
        the block's dependents start)."""
        lock = self._lock
        with self._write_lock:
            with lock:
                batches = self._batches
                if batches:
                    self._batches = []
                upto = self._queued
            error = self._write(batches) if batches else None
            with lock:
                if error is not None and self._error is None:
                    self._error = error
                if upto > self._written:
                    self._written = upto
                if self._waiters:  # waking the recorder thread for nothing costs the GIL
                    self._cond.notify_all()
                error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Write everything queued, stop the thread, raise any pending write error."""
        with self._cond:
            if not self._closed:
                self._closing = True
                self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        self._closed = True
        _live.discard(self)
        self._raise_error()

    @property
    def pending(self) -> int:
        """How many queued changes are not written yet."""
        with self._cond:
            return self._queued - self._written

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except Exception:
                pass

    # -------------------------------------------------------------- internals
    def _raise_error(self) -> None:
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _enqueue(self, key: Key, insert: bool, fields: dict[str, Any]) -> None:
        with self._lock:
            if self._closing or self._closed:
                raise RuntimeError("the recorder is closed")
            batches = self._batches
            batch = batches[-1] if batches else None
            if insert:
                if batch is None or key in batch:
                    batch = {}
                    batches.append(batch)
                batch[key] = (True, fields)
            else:
                if batch is None:
                    batch = {}
                    batches.append(batch)
                op = batch.get(key)
                if op is None:
                    batch[key] = (False, fields)
                else:
                    op[1].update(fields)
            self._queued += 1
            if self._idle:
                self._idle = False
                self._cond.notify()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - nothing useful to do at this point
                pass

    def _loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                # Changes come in runs: after a write (or at start) gather for one interval
                # without being woken per change (each wake-up is a GIL hand-off, and the
                # runner's write_now() usually takes the change first anyway).
                self._gather(cond)
                if not self._batches and not self._closing:
                    # Nothing came for a whole interval: sleep until a change clears
                    # _idle, then let more gather for one interval (even if write_now()
                    # takes that change meanwhile: going back to sleep at once would
                    # have the next change wake the thread again).
                    self._flush_requested = False
                    self._idle = True
                    while self._idle and not self._closing:
                        cond.wait()
                    self._idle = False
                    self._gather(cond)
                if not self._batches:
                    if self._closing:  # and nothing left
                        return
                    continue  # write_now() took them
            with self._write_lock:
                with cond:
                    batches, self._batches = self._batches, []
                    upto = self._queued
                    self._flush_requested = False
                error = self._write(batches) if batches else None
                with cond:
                    if error is not None and self._error is None:
                        self._error = error
                    self._written = max(self._written, upto)
                    if self._waiters:
                        cond.notify_all()

    def _gather(self, cond: threading.Condition) -> None:
        """Wait one interval (cond held), or less if someone flushes or closes."""
        deadline = time.monotonic() + self._interval
        while not (self._flush_requested or self._closing):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            cond.wait(remaining)

    def _write(self, batches: list[dict[Key, _Op]]) -> RecorderError | None:
        writer = self._writer
        try:
            if len(batches) == 1:  # what write_now() usually finds
                batch = batches[0]
                if len(batch) == 1:
                    ((key, (insert, fields)),) = batch.items()
                    writer.write([(insert, [_row(key, insert, fields)])])
                else:
                    writer.write(_groups(batch.items()))
            else:
                writer.write([group for batch in batches for group in _groups(batch.items())])
            return None
        except BaseException as exc:  # noqa: BLE001 - kept and raised from flush()
            first = exc
        total = sum(len(b) for b in batches)
        if not writer.is_row_error(first):
            return RecorderError(
                f"could not record {total} block run change(s): {first}", lost=total, original=first
            )
        # One bad row must not cost the others: retry them one by one.
        lost = 0
        original: BaseException | None = None
        for batch in batches:
            for key, op in batch.items():
                try:
                    writer.write(_groups([(key, op)]))
                except BaseException as exc:  # noqa: BLE001
                    lost += 1
                    if original is None:
                        original = exc
        if original is None:
            return None
        return RecorderError(
            f"could not record {lost} of {total} block run change(s): {original}",
            lost=lost,
            original=original,
        )


def _groups(ops: Iterable[tuple[Key, _Op]]) -> list[Group]:
    """One batch's changes as executemany groups: inserts by column set, then updates
    by column set (a batch has one op per key, so their order does not matter)."""
    inserts: dict[frozenset, list[dict]] = {}
    updates: dict[frozenset, list[dict]] = {}
    for key, (insert, fields) in ops:
        if insert:
            row = _row(key, insert, fields)
            inserts.setdefault(frozenset(row), []).append(row)
        else:
            updates.setdefault(frozenset(fields), []).append(_row(key, insert, fields))
    return [(True, rows) for rows in inserts.values()] + [(False, rows) for rows in updates.values()]


def _row(key: Key, insert: bool, fields: dict[str, Any]) -> dict[str, Any]:
    """A change as the writer takes it: a block_runs row, or the columns to set plus
    `_run_id` and `_block_uuid`."""
    if insert:
        return {"pipeline_run_id": key[0], "block_uuid": key[1], **fields}
    return {"_run_id": key[0], "_block_uuid": key[1], **fields}
