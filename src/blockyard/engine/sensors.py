"""Sensors, as in Mage: a sensor block's function is called every `poke_interval`
seconds (its `configuration.poke_interval`, Mage's key; default 60) until it returns
a true value, up to the block's `timeout` (then it fails and its downstream blocks
are upstream_failed). Downstream blocks never run while it says False.

A sensor polls on a thread of its own whatever the executor (it mostly waits and
must not hold a pool slot) and stops at once when its run is cancelled. After each
False the runner records `{"state": "waiting", "polls": n}` in the block run's
metrics and emits a `sensor` event (CLI live view, UI run page, API block runs).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from blockyard.errors import BlockTimeout, BlockyardError

DEFAULT_POKE_INTERVAL = 60.0  # Mage's sensor default


@dataclass
class Poll:
    """A sensor's poll returned False (sent to the run loop, which records it)."""

    polls: int


def poke_interval(configuration: dict, run_settings: dict, where: dict) -> float:
    """Seconds between a sensor's polls: the block's `configuration.poke_interval`
    (Mage's key), else the trigger's `poke_interval` setting, else 60."""
    for source in (configuration, run_settings):
        value = source.get("poke_interval")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise BlockyardError(
                f"poke_interval must be a number of seconds >= 0, not {value!r}", **where
            )
        return float(value)
    return DEFAULT_POKE_INTERVAL


def start_sensor(execute: Callable[[Any], Any], task: Any, done: Callable[[Any], None]) -> None:
    """`execute(task)` on a daemon thread; then `done(outcome or exception)`."""

    def work() -> None:
        try:
            result: Any = execute(task)
        except BaseException as exc:  # noqa: BLE001 - handed to the run loop
            result = exc
        done(result)

    threading.Thread(target=work, name=f"sensor-{task.node_uuid}", daemon=True).start()


def poll_sensor(
    call: Callable[[float | None], Any], task: Any, outcome: Any, log: Any
) -> Any:
    """Mage's sensor: call the function every `poke_interval` seconds until it returns
    a true value, up to the block's `timeout` (then BlockTimeout); returns that value,
    or None if the run was cancelled meanwhile. `call(timeout)` calls the function once
    (within `timeout` seconds). `outcome.attempts` counts the polls."""
    deadline = time.monotonic() + task.timeout if task.timeout else None
    polls = 0
    while True:
        if task.cancel is not None and task.cancel.is_set():
            return None
        polls += 1
        outcome.attempts = polls
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise sensor_timeout(task, polls - 1)
        try:
            value = call(remaining)
        except BlockTimeout:
            raise sensor_timeout(task, polls) from None
        if value:
            log.line(f"sensor condition met on poll {polls}", hold=True)
            return value
        if task.on_poll is not None:
            task.on_poll(polls)
        wait = task.poke_interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        log.line(f"sensor poll {polls}: not yet; next poll in {wait:g} s")  # shown live
        log.flush()
        if task.cancel is not None:
            if task.cancel.wait(wait):
                return None
        elif wait:
            time.sleep(wait)


def sensor_timeout(task: BlockTask, polls: int) -> BlockTimeout:
    return BlockTimeout(
        f"sensor did not return True within its timeout of {task.timeout:g} s ({polls} poll(s))",
        file=task.file_path,
        block=task.node_uuid,
        hint="raise the block's 'timeout' in metadata.yaml, or check what the sensor waits for",
    )
