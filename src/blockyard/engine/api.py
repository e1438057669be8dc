"""Kept for callers of the old path (cli.py, tests): `run_pipeline` moved to
`blockyard.api`, above the engine (it opens the session: database and store)."""
from blockyard.api import BlockRunResult, RunResult, run_pipeline  # noqa: F401
