"""The block decorators (`@data_loader`, `@transformer`, `@test`, ...).

They only tag the function and, while a block file is being loaded, append it to
that load's collector. The loader injects them into each block's globals, and
`mage_ai.data_preparation.decorators` resolves here through the compat shim, so
both the injected names and the `if 'x' not in globals(): from mage_ai...` idiom
end up calling the same code.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

# Kinds of the one main function of a block.
MAIN_KINDS = (
    "data_loader",
    "transformer",
    "data_exporter",
    "custom",
    "sensor",
    "scratchpad",
)

_local = threading.local()


def _collector() -> list | None:
    return getattr(_local, "collector", None)


class collecting:
    """Context manager used by the loader: decorated functions land in `items`."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None, Callable]] = []

    def __enter__(self) -> "collecting":
        self._prev = _collector()
        _local.collector = self.items
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.collector = self._prev


def _tag(kind: str, fn: Callable, arg: str | None = None) -> Callable:
    try:
        fn.__blockyard_kind__ = kind  # type: ignore[attr-defined]
        fn.__blockyard_arg__ = arg  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass
    items = _collector()
    if items is not None:
        items.append((kind, arg, fn))
    return fn


def _simple(kind: str) -> Callable:
    def decorator(fn: Callable | None = None, *args: Any, **kwargs: Any):
        # Mage allows both `@data_loader` and `@data_loader()`.
        if fn is None or not callable(fn):
            return lambda f: _tag(kind, f)
        return _tag(kind, fn)

    decorator.__name__ = kind
    return decorator


data_loader = _simple("data_loader")
transformer = _simple("transformer")
data_exporter = _simple("data_exporter")
custom = _simple("custom")
sensor = _simple("sensor")
scratchpad = _simple("scratchpad")
test = _simple("test")
condition = _simple("condition")
on_success = _simple("on_success")
on_failure = _simple("on_failure")
preprocessor = _simple("preprocessor")
collect = _simple("collect")
reduce = _simple("reduce")
columns = _simple("columns")
# Mage's chart/extension decorators: accepted and tagged (`@render(render_type="jpeg")`),
# so blocks using them load; nothing calls the tagged functions. Only `render` is
# injected into block globals (names like `x` must stay NameErrors there).
render = _simple("render")
extension = _simple("extension")
configuration = _simple("configuration")
data_source = _simple("data_source")
x = _simple("x")
y = _simple("y")
xy = _simple("xy")


def callback(fn_or_status: Callable | str = "success", *more: str) -> Callable:
    """`@callback('success')`, `@callback('failure')` or bare `@callback`."""
    if callable(fn_or_status):
        return _tag("callback", fn_or_status, "success")
    statuses = ",".join((fn_or_status, *more))
    return lambda fn: _tag("callback", fn, statuses)


INJECTED = {
    name: globals()[name]
    for name in (
        *MAIN_KINDS,
        "test",
        "condition",
        "callback",
        "on_success",
        "on_failure",
        "preprocessor",
        "collect",
        "reduce",
        "columns",
        "render",
    )
}
