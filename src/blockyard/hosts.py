"""Which listen addresses only this machine can reach: the rule behind "bind to loopback
unless a token is set", shared by the server and `blockyard serve`."""
from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (what only this machine can reach)."""
    text = (host or "").strip().strip("[]").lower()
    if text in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False
