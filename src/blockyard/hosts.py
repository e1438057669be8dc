"""This machine's name, and which listen addresses only this machine can reach: the rule
behind "bind to loopback unless a token is set", shared by the server and `blockyard serve`.
Light on purpose (a run's start-up imports it): no socket, ipaddress only when asked."""
from __future__ import annotations

import os


def hostname() -> str:
    """What socket.gethostname() returns (recorded with every run and block run)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (what only this machine can reach)."""
    text = (host or "").strip().strip("[]").lower()
    if text in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False
