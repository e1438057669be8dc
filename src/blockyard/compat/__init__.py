"""Mage compatibility: `mage_ai.*` imports served by Blockyard (see `shim`)."""
from __future__ import annotations

from blockyard.compat.shim import MODULES, install, is_installed, uninstall

__all__ = ["MODULES", "install", "is_installed", "uninstall"]
