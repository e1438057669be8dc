"""Kept for callers of the old path (cli.py, tests): the session moved to
`blockyard.session`, above the engine (it opens the database)."""
from blockyard.session import Session, reset_sessions, session_for  # noqa: F401
