"""Shared pieces of the server tests: a small workspace, app/client factories, a real
`blockyard start` process on a free loopback port. (No tests in this module.)"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from wsbuilder import block, write_pipeline

BIN = Path(sys.executable).parent / "blockyard"

LOAD = """
    @data_loader
    def load(**kwargs):
        print('loading', kwargs.get('n', 2))
        if kwargs.get('fail'):
            raise ValueError('asked to fail')
        return kwargs.get('n', 2)
    """
SQUARE = """
    @transformer
    def square(x, **kwargs):
        return x * x
    """
FRAME = """
    import pandas as pd

    @transformer
    def frame(x, **kwargs):
        return pd.DataFrame({'a': [x, x + 1], 'b': ['u', 'v']})
    """
ECHO = """
    @custom
    def echo(**kwargs):
        seen = {k: kwargs.get(k) for k in ('key', 'n', 'from_trigger')}
        print('variables', seen)
        return seen
    """
# Prints a line, then waits for the flag file named by the `flag` variable: the SSE test
# can only create that file after the stream delivered the line of a running block.
WAIT = """
    import os
    import time

    @custom
    def wait(**kwargs):
        print('hello from a running block', flush=True)
        flag = kwargs.get('flag')
        for _ in range(1200):
            if not flag or os.path.exists(flag):
                break
            time.sleep(0.05)
        print('flag seen', flush=True)
        return 'done'
    """


@dataclass
class Space:
    root: Path
    project: str

    @property
    def ref(self) -> str:
        return f"{self.project}/pipe"

    def pipeline_url(self, pipeline: str = "pipe") -> str:
        return f"/api/projects/{self.project}/pipelines/{pipeline}"


def make_workspace(tmp_path: Path, project: str | None = None) -> Space:
    """A workspace with a project (unique name: PostgreSQL databases are shared) holding
    `pipe` (load -> square, load -> frame), `echo` and `slow`."""
    project = project or f"p{uuid.uuid4().hex[:8]}"
    root = tmp_path / "ws"
    root.mkdir(parents=True, exist_ok=True)
    write_pipeline(root, project, "pipe", [
        block("load", LOAD, type="data_loader"),
        block("square", SQUARE, type="transformer", upstream=["load"]),
        block("frame", FRAME, type="transformer", upstream=["load"]),
    ], variables={"n": 2})
    write_pipeline(root, project, "echo", [block("echo", ECHO, type="custom")])
    write_pipeline(root, project, "slow", [block("wait", WAIT, type="custom")])
    return Space(root, project)


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env.update(extra or {})
    env["COLUMNS"] = "200"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`blockyard start WORKSPACE --port P ...` as a real process."""

    def __init__(self, root: Path, *args: str, env: dict | None = None, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or (root.parent / f"server-{self.port}.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(BIN), "start", str(root), "--port", str(self.port), *args],
            env=clean_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/api/status", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(Exception):
            self._log.close()


def wait_for_run(client, run_id: int, timeout: float = 60, done=("completed", "failed", "cancelled")) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in done:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']}")
        time.sleep(0.05)


def sse_events(lines):
    """Parse Server-Sent Events from an iterator of text lines: yields (event, data)."""
    event, data = None, []
    for line in lines:
        if line == "":
            if event is not None or data:
                yield event, json.loads("\n".join(data)) if data else None
            event, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
