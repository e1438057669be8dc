"""Per-block-run log files.

`print` in a block and the `logger` kwarg both land in the block run's own log
file. Blocks run concurrently in threads, so stdout/stderr are replaced once by
a proxy that routes each write to the log of the block running on that thread
(a context variable), and to the real stream otherwise.
"""
from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
import time
from pathlib import Path

from blockyard import masking

_current: contextvars.ContextVar["BlockLog | None"] = contextvars.ContextVar(
    "blockyard_block_log", default=None
)
_install_lock = threading.Lock()


class BlockLog:
    """A block run's log file, created on the first line a block (or an error) writes.

    Blockyard's own bookkeeping lines (start, end, tests) are held back until then:
    a quiet block that succeeds costs no file at all, which keeps orchestration
    overhead near zero; its timing lives in the run history anyway.
    """

    def __init__(self, path: "Path | str", echo: bool = False) -> None:
        self._path = path  # a Path is made only for a block that writes (~8 us each)
        self.echo = echo
        self._fh: io.TextIOBase | None = None
        self._held: list[tuple[float, str, str, tuple]] = []
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        if not isinstance(self._path, Path):
            self._path = Path(self._path)
        return self._path

    @property
    def created(self) -> bool:
        return self._fh is not None

    def write(self, text: str) -> int:
        if not text:
            return 0
        n = len(text)
        if masking.active():
            text = masking.mask(text)  # secret values the run touched never reach the file
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8", buffering=1)
                if self._held:
                    self._fh.write("".join(_format(*held) for held in self._held))
                    self._held.clear()
            self._fh.write(text)
        return n

    def line(self, message: str, level: str = "INFO", *, hold: bool = False) -> None:
        self._entry(level, message, (), hold)

    def hold(self, template: str, *args: object) -> None:
        """A bookkeeping line `template % args`, formatted only if the file comes to be."""
        self._entry("INFO", template, args, True)

    def _entry(self, level: str, message: str, args: tuple, hold: bool) -> None:
        if hold and self._fh is None:
            with self._lock:
                if self._fh is None:  # formatted only if the file ever comes to be
                    self._held.append((time.time(), level, message, args))
                    return
        self.write(_format(time.time(), level, message, args))

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _format(when: float, level: str, message: str, args: tuple) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return masking.mask(f"{stamp} {level} {message % args if args else message}\n")


class _RoutingStream(io.TextIOBase):
    def __init__(self, real) -> None:
        self._real = real

    def write(self, text: str) -> int:
        log = _current.get()
        if log is not None:
            return log.write(text)
        return self._real.write(text)

    def flush(self) -> None:
        log = _current.get()
        if log is not None:
            log.flush()
        self._real.flush()

    def isatty(self) -> bool:
        return _current.get() is None and self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")

    def __getattr__(self, name):
        return getattr(self._real, name)


def install_stream_routing() -> None:
    if type(sys.stdout) is _RoutingStream and type(sys.stderr) is _RoutingStream:
        return  # installed already (every block run asks)
    with _install_lock:
        if not isinstance(sys.stdout, _RoutingStream):
            sys.stdout = _RoutingStream(sys.stdout)
        if not isinstance(sys.stderr, _RoutingStream):
            sys.stderr = _RoutingStream(sys.stderr)


_FORMATTER = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")


class _BlockLogHandler(logging.Handler):
    """One per block run, so made cheaply: `logging.Handler.__init__` registers every
    handler in a global table under the logging lock and makes an RLock; this one
    needs neither (BlockLog locks its own writes; nothing global refers to it)."""

    def __init__(self, log: BlockLog) -> None:  # noqa: super().__init__ skipped on purpose
        self.filters = []
        self._name = None
        self.level = logging.NOTSET
        self.formatter = _FORMATTER
        self._closed = False
        self.lock = None
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.write(self.format(record) + "\n")
        except Exception:  # a log line must never fail a block
            self.handleError(record)


def block_logger(name: str, log: BlockLog) -> logging.Logger:
    """A real `logging.Logger`, not registered in the global manager (no leak per run)."""
    logger = logging.Logger(f"blockyard.{name}", logging.DEBUG)
    # Set, not addHandler(): that takes logging's global lock, for a logger nothing else
    # can see yet.
    logger.handlers = [_BlockLogHandler(log)]
    logger.propagate = False
    return logger


class routed:
    """Route this thread's prints to `log` for the duration of the block."""

    def __init__(self, log: BlockLog) -> None:
        self.log = log

    def __enter__(self) -> BlockLog:
        self._token = _current.set(self.log)
        return self.log

    def __exit__(self, *exc) -> None:
        _current.reset(self._token)
