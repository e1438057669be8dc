"""`blockyard start`: the web server, the scheduler and a worker in one process, or
one role alone (several processes or machines sharing one PostgreSQL database).

The threads share a stop event; the wake-up when the API queues a run is the
orchestration layer's (enqueue_run sets the event every in-process worker registered,
so it claims the run at once instead of at its next poll). SIGTERM/SIGINT stop it
cleanly: the
scheduler and the worker stop claiming, running blocks finish (the worker's leases
cover a process that is killed instead), uvicorn stops, exit code 0. A second
signal exits at once.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from blockyard.server.config import ServerConfig
from blockyard.server.middleware import redact

log = logging.getLogger("blockyard.server")

class RedactTokens(logging.Filter):
    """Access-log lines must not show API trigger tokens (they are in Mage's URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


class Service:
    def __init__(self, workspace: Any, config: ServerConfig, *, echo: Callable[[str], None] = print) -> None:
        self.workspace = workspace
        self.config = config
        self.echo = echo
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.failed: list[str] = []
        self.server = None
        self.health = None
        self._signals = 0

    # ------------------------------------------------------------------ roles
    def _thread(self, name: str, target: Callable[[], Any]) -> None:
        def body() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001
                log.exception("%s stopped with an error", name)
                self.failed.append(f"{name}: {type(exc).__name__}: {exc}")
                self.shutdown()

        self.threads.append(threading.Thread(target=body, name=f"blockyard-{name}", daemon=True))

    def _setup_roles(self, db: Any) -> None:
        if self.config.scheduler:
            from blockyard.orchestration.scheduler import Scheduler

            scheduler = Scheduler(self.workspace, db)
            self._thread("scheduler", lambda: scheduler.run_forever(self.stop_event))
        if self.config.worker:
            from blockyard.orchestration.worker import Worker

            worker = Worker(self.workspace, db, concurrency=self.config.workers)
            self._thread("worker", lambda: worker.run_forever(self.stop_event))

    def role_state(self) -> dict[str, str]:
        """Each role's readiness for /readyz: ready, starting, draining or stopped."""
        if self.stop_event.is_set():
            names = [t.name.removeprefix("blockyard-") for t in self.threads]
            return {n: "draining" for n in (["web"] if self.config.web else []) + names}
        out: dict[str, str] = {}
        if self.config.web:
            out["web"] = "ready" if self.server is not None and self.server.started else "starting"
        for t in self.threads:
            name = t.name.removeprefix("blockyard-")
            out[name] = "ready" if t.is_alive() else ("starting" if t.ident is None else "stopped")
        return out

    # ---------------------------------------------------------------- signals
    def shutdown(self) -> None:
        self.stop_event.set()
        if self.server is not None:
            self.server.should_exit = True

    def _on_signal(self, signum, _frame) -> None:
        self._signals += 1
        if self._signals > 1:
            sys.stderr.write("blockyard: second signal, exiting now\n")
            sys.stderr.flush()
            os._exit(1)
        log.info("received %s: shutting down (running blocks finish; send it again to exit at once)",
                 signal.Signals(signum).name)
        self.shutdown()

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        from blockyard.session import session_for

        try:
            db = session_for(self.workspace).db  # migrates the run history
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad URL, failed migration
            sys.stderr.write(f"error: cannot open the run history database {_safe_url(self.workspace)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}\n")
            return 1
        self._setup_roles(db)
        self._install_signals()
        roles = self.config.role if self.config.role != "all" else "web + scheduler + worker"
        if self.config.web:
            code = self._run_web(db, roles)
        else:
            if self.config.health_port is not None:
                from blockyard.server.routes.status import HealthServer

                try:
                    self.health = HealthServer(self.config.host, self.config.health_port,
                                               self.config.role, db, self.role_state).start()
                except OSError as exc:
                    sys.stderr.write(f"error: cannot serve /healthz on port {self.config.health_port}: {exc}\n")
                    return 1
            health = f"; /healthz and /readyz on port {self.health.port}" if self.health else ""
            self.echo(f"Blockyard {roles} for workspace '{self.workspace.name}' "
                      f"({db.dialect} database){health}; Ctrl+C to stop")
            for t in self.threads:
                t.start()
            while not self.stop_event.wait(0.5):
                pass
            code = 0
        self.shutdown()
        for t in self.threads:
            if t.ident is not None:
                t.join()
        if self.health is not None:  # answers (503 on /readyz) until the roles drained
            self.health.stop()
        if self.failed:
            for message in self.failed:
                sys.stderr.write(f"error: {message}\n")
            return 1
        return code

    def _run_web(self, db: Any, roles: str) -> int:
        import uvicorn

        from blockyard.server.app import create_app

        app = create_app(
            self.workspace,
            self.config,
            stop_event=self.stop_event,
            local_workers=self.config.workers if self.config.worker else 0,
        )
        app.state.blockyard.role_probe = self.role_state
        uconfig = uvicorn.Config(
            app,
            host=self.config.host,
            port=self.config.port,
            log_level=self.config.log_level,
            timeout_graceful_shutdown=30,
            # An idle keep-alive connection is closed after 5 s; a stalled request body
            # gets a 408 from GuardMiddleware (ServerConfig.body_timeout).
            timeout_keep_alive=5,
            lifespan="off",
            server_header=False,
        )
        logging.getLogger("uvicorn.access").addFilter(RedactTokens())

        class _Server(uvicorn.Server):
            # Signals are ours (see Service._on_signal): uvicorn must neither install its
            # handlers nor re-raise the signal after shutdown (that would kill the process
            # before the worker finishes).
            @contextlib.contextmanager
            def capture_signals(self):  # uvicorn >= 0.29
                yield

            def install_signal_handlers(self) -> None:  # older uvicorn
                return None

        self.server = _Server(uconfig)
        if self.stop_event.is_set():
            self.server.should_exit = True
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        auth = "token required" if self.config.auth_enabled else "no token (loopback only)"
        self.echo(f"Blockyard {roles} on http://{host}:{self.config.port} — workspace "
                  f"'{self.workspace.name}', {db.dialect} database, {auth}; API docs at /docs")
        for t in self.threads:
            t.start()
        try:
            self.server.run(sockets=[_reuse_port_socket(self.config.host, self.config.port)]
                            if self.config.reuse_port else None)
        except OSError as exc:
            self.failed.append(f"the web server could not bind {host}:{self.config.port}: {exc}")
            return 1
        except SystemExit as exc:  # uvicorn exits when it cannot bind the port
            self.failed.append(f"the web server could not start (exit {exc.code}); is port {self.config.port} free?")
            return 1
        if not self.server.started and not self.stop_event.is_set():
            self.failed.append(f"the web server could not start on {host}:{self.config.port}")
            return 1
        return 0


def _reuse_port_socket(host: str, port: int):
    """A listening socket with SO_REUSEPORT: a replacement web process binds the same
    port before the old one stops, so a restart on one host drops no connection."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else ""


def _safe_url(workspace: Any) -> str:
    from pathlib import Path

    from blockyard import settings

    url = settings.database_url_for(settings.data_dir_for(Path(workspace.root)))
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparsable URL)"


def serve(workspace: Any, config: ServerConfig, *, echo: Callable[[str], None] = print) -> int:
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    started = time.monotonic()
    code = Service(workspace, config, echo=echo).run()
    log.info("stopped after %.1f s", time.monotonic() - started)
    return code
