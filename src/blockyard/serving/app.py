"""The HTTP app of `blockyard serve`: MLflow's scoring protocol from a warm model.

    GET  /ping                 200 when a model is loaded (503 before)
    GET  /health               {"status", "model", "alias", "version"}
    GET  /version              which model version answers, the last swaps
    POST /invocations          {"dataframe_records"|"dataframe_split"|"inputs": ...} -> {"predictions": [...]}
    POST /invocations/batch    the same payloads, up to `max_batch_rows` rows (bigger bodies)
    GET  /stats                request counts, errors, server-side latency percentiles
    GET  /retraining           registered versions with their retraining decisions
    GET  /                     the serving page (see page.py)

Every answer carries `X-Model-Version`. Bad input is a 400/413/422 naming the field.
"""


import collections
import contextlib
import signal
import json
import logging
import time
from pathlib import Path
from typing import Any

from blockyard.serving.features import RequestError, parse_body
from blockyard.serving.model import ModelHolder, ModelNotFound
from blockyard.serving.predlog import PredictionLog, predictions_dir

_log = logging.getLogger("blockyard.serving")

MAX_BODY = 5 * 1024 * 1024
MAX_BATCH_BODY = 64 * 1024 * 1024
MAX_ROWS = 10_000
MAX_BATCH_ROWS = 500_000
BATCH_CHUNK = 20_000


class Stats:
    """Counters and the last latencies (server side, ms) for /stats and the UI."""

    def __init__(self, keep: int = 200_000) -> None:
        self.started = time.time()
        self.requests = 0
        self.rows = 0
        self.client_errors = 0
        self.server_errors = 0
        self.latencies: collections.deque = collections.deque(maxlen=keep)
        self.recent: collections.deque = collections.deque(maxlen=keep)  # (time, ok) for requests/s

    def ok(self, rows: int, latency_ms: float) -> None:
        self.requests += 1
        self.rows += rows
        self.latencies.append(latency_ms)
        self.recent.append(time.time())

    def snapshot(self) -> dict:
        import numpy as np

        lat = np.fromiter(self.latencies, dtype=float) if self.latencies else None
        now = time.time()
        last10 = 0
        for t in reversed(self.recent):  # newest first: stop at the first one older than 10 s
            if now - t > 10:
                break
            last10 += 1
        pct = {}
        if lat is not None and lat.size:
            for p in (50, 90, 99):
                pct[f"p{p}_ms"] = round(float(np.percentile(lat, p)), 3)
            pct["max_ms"] = round(float(lat.max()), 3)
        return {"uptime_seconds": round(now - self.started, 1), "requests": self.requests, "rows": self.rows,
                "client_errors": self.client_errors, "server_errors": self.server_errors,
                "requests_per_second_10s": round(last10 / 10, 2), "latency": pct, "latency_samples": len(self.latencies)}

    def reset(self) -> None:
        self.latencies.clear()


class ServingContext:
    """What one serving process holds: the model holder, the prediction log, the stats."""

    def __init__(self, workspace_root: Path, holder: ModelHolder, *, log_predictions: bool = True,
                 max_body: int = MAX_BODY, token: str | None = None) -> None:
        self.root = Path(workspace_root).resolve()
        self.holder = holder
        self.predlog = PredictionLog(predictions_dir(self.root)) if log_predictions else None
        self.stats = Stats()
        self.max_body = max_body
        self.token = token  # when set, scoring needs `Authorization: Bearer <token>`

    def start(self) -> None:
        try:
            self.holder.load()
        except ModelNotFound as exc:
            _log.warning("%s; waiting for it (polling every %.1f s)", exc, self.holder.poll_seconds)
        self.holder.start()

    def close(self) -> None:
        self.holder.stop()
        if self.predlog is not None:
            self.predlog.close()

    def score(self, records: list[dict], source: str, field: str, started: float) -> tuple[Any, list[float]]:
        """(the LoadedModel that answered, predictions); logs them."""
        model = self.holder.current  # read once: a swap during this request changes nothing here
        if model is None:
            raise RequestError(f"no model {self.holder.name}@{self.holder.alias} is registered yet", status=503)
        rows = model.spec.prepare(records, field)  # all validated first: error indexes are the request's
        predictions = []
        for i in range(0, len(rows), BATCH_CHUNK):
            predictions.extend(model.predict_rows(rows[i:i + BATCH_CHUNK]))
        latency_ms = (time.perf_counter() - started) * 1000
        if self.predlog is not None:
            self.predlog.record(model.name, model.version, records, predictions, latency_ms, source)
        self.stats.ok(len(records), latency_ms)
        return model, predictions


async def read_body(request: Any, limit: int) -> bytes:
    """The body, refusing (413) more than `limit` bytes without reading it all."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise RequestError(f"the body is {int(length):,} bytes; the limit is {limit:,}", status=413, field="body")
        except ValueError:
            raise RequestError("bad Content-Length header", status=400) from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the body is over the limit of {limit:,} bytes", status=413, field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(payload: Any, status: int = 200, headers: dict | None = None):
    from starlette.responses import Response

    return Response(json.dumps(payload).encode(), status_code=status, media_type="application/json", headers=headers)


def create_serving_app(ctx: ServingContext):
    from fastapi import FastAPI, Request
    from starlette.responses import PlainTextResponse

    import blockyard

    app = FastAPI(title="Blockyard serving", version=blockyard.__version__,
                  description="Online inference from the MLflow registry (MLflow's scoring protocol).")
    app.state.serving = ctx

    def error(exc: RequestError):
        if exc.status >= 500:
            ctx.stats.server_errors += 1
        else:
            ctx.stats.client_errors += 1
        return json_response(exc.to_dict(), exc.status)

    async def _score(request: Request, limit: int, max_rows: int, source: str):
        started = time.perf_counter()
        try:
            if ctx.token:
                import hmac

                given = request.headers.get("authorization", "")
                if not (given[:7].lower() == "bearer " and hmac.compare_digest(given[7:].strip().encode(), ctx.token.encode())):
                    raise RequestError("missing or wrong `Authorization: Bearer <token>`", status=401)
            body = await read_body(request, limit)
            records = parse_body(body, request.headers.get("content-type"))
            if len(records) > max_rows:
                raise RequestError(f"{len(records):,} records; this endpoint takes at most {max_rows:,}"
                                   + (" (use /invocations/batch)" if source == "invocations" else ""),
                                   status=413, field="body")
            model, predictions = ctx.score(records, source, "inputs", started)
        except RequestError as exc:
            return error(exc)
        return json_response({"predictions": predictions}, headers={"X-Model-Version": model.version})

    @app.post("/invocations", summary="Predict (MLflow scoring protocol)")
    async def invocations(request: Request):
        return await _score(request, ctx.max_body, MAX_ROWS, "invocations")

    @app.post("/invocations/batch", summary="Predict many rows at once (same payloads, bigger limits)")
    async def invocations_batch(request: Request):
        return await _score(request, max(ctx.max_body, MAX_BATCH_BODY), MAX_BATCH_ROWS, "batch")

    @app.get("/ping", summary="200 when a model is loaded")
    async def ping():
        if ctx.holder.current is None:
            return PlainTextResponse("no model loaded\n", status_code=503)
        return PlainTextResponse("\n")

    # The probes every role answers (deploy/k8s, compose): alive, and ready = a model loaded.
    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return json_response({"status": "alive", "role": "serve"}, 200)

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        return await health()

    @app.get("/health")
    async def health():
        model = ctx.holder.current
        body = {"status": "ok" if model else "waiting for a model", "model": ctx.holder.name,
                "alias": ctx.holder.alias, "version": model.version if model else None,
                "last_poll_error": ctx.holder.last_error}
        return json_response(body, 200 if model else 503)

    @app.get("/version", summary="Which model version answers")
    async def version():
        import mlflow

        model = ctx.holder.current
        body = {"model": ctx.holder.name, "alias": ctx.holder.alias, "version": model.version if model else None,
                "details": model.describe() if model else None, "swaps": list(ctx.holder.swaps),
                "mlflow_version": mlflow.__version__, "blockyard_version": blockyard.__version__}
        return json_response(body)

    @app.get("/stats", summary="Counts and server-side latency percentiles")
    async def stats():
        snap = ctx.stats.snapshot()
        model = ctx.holder.current
        snap.update(model=ctx.holder.name, alias=ctx.holder.alias, version=model.version if model else None,
                    swaps=list(ctx.holder.swaps),
                    predictions_logged=ctx.predlog.rows_written if ctx.predlog else None)
        return json_response(snap)

    @app.get("/", include_in_schema=False)
    async def page():
        from starlette.responses import HTMLResponse

        from blockyard.serving.page import PAGE

        return HTMLResponse(PAGE)

    @app.get("/retraining", summary="The model's registered versions with their retraining decisions")
    def retraining():  # sync: an MLflow query must not block the event loop
        from blockyard.serving.page import retraining_history

        try:
            versions = retraining_history(ctx.root, ctx.holder.name)
        except Exception as exc:  # noqa: BLE001 - the registry may be unreachable; the page shows it
            return json_response({"versions": [], "error": f"{type(exc).__name__}: {exc}"})
        return json_response({"versions": versions})

    @app.post("/stats/reset", summary="Forget the latency samples (for benchmarks)")
    async def stats_reset():
        ctx.stats.reset()
        return json_response({"ok": True})

    return app


def run_server(workspace_root: Path, *, host: str = "127.0.0.1", port: int = 6790, model: str, alias: str,
               transform: str | None = None, poll_seconds: float = 2.0, log_predictions: bool = True,
               log_level: str = "warning", token: str | None = None, echo=print) -> int:
    """Run `blockyard serve` until SIGINT/SIGTERM (uvicorn's handlers)."""
    import uvicorn

    holder = ModelHolder(workspace_root, model, alias, transform=transform, poll_seconds=poll_seconds)
    ctx = ServingContext(workspace_root, holder, log_predictions=log_predictions, token=token)
    ctx.start()
    app = create_serving_app(ctx)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="off", server_header=False, http="httptools", loop="uvloop")
    class _Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM/SIGINT after its shutdown, which would kill the process
        # before the prediction log is flushed: stop on the signal, exit normally.
        @contextlib.contextmanager
        def capture_signals(self):
            def handler(signum, frame):
                self.force_exit = self.should_exit  # a second signal: no graceful wait
                self.should_exit = True

            previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)

    server = _Server(config)
    current = holder.current
    echo(f"Blockyard serving {model}@{alias} "
         + (f"v{current.version}" if current else "(no version yet: waiting)")
         + f" on http://{host}:{port} (POST /invocations, GET /version); Ctrl+C to stop")
    try:
        server.run()
    finally:
        ctx.close()
    return 0 if server.started else 1
