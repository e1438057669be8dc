"""What a chart builder is handed (ChartContext) and what it raises (ChartError), apart
from compute.py so the builders can type against it without an import cycle."""
from __future__ import annotations

from typing import Any

from blockyard.errors import BlockyardError


class ChartError(BlockyardError):
    """A chart widget could not be computed: bad configuration, failing chart code,
    or a variable the configuration names is missing."""


class ChartContext:
    def __init__(self, uuid: str, config: dict, inputs: list, namespace: dict | None, code_path: str | None):
        self.uuid = uuid
        self.config = config
        self.inputs = inputs
        self.namespace = namespace
        self.code_path = code_path

    def error(self, message: str, hint: str | None = None) -> ChartError:
        return ChartError(message, block=self.uuid, file=self.code_path, hint=hint)

    def frame(self):
        """df_1 as a DataFrame (the first output of a multi-output block)."""
        import pandas as pd

        value = self.namespace.get("df_1") if self.namespace else (self.inputs[0] if self.inputs else None)
        if isinstance(value, list) and value and (
            isinstance(value[0], (pd.DataFrame, pd.Series)) or hasattr(value[0], "shape")
        ):
            value = value[0]  # the first output of a block with several outputs
        if hasattr(value, "toarray") and not isinstance(value, (pd.DataFrame, pd.Series)):
            from blockyard.compat.parsers import convert_matrix_to_dataframe

            value = convert_matrix_to_dataframe(value)
        if isinstance(value, pd.Series):
            value = value.to_frame()
        if isinstance(value, pd.DataFrame):
            return value
        if value is None:
            raise self.error("the chart has no upstream data (df_1 is empty)")
        try:
            return pd.DataFrame(value)
        except Exception:
            raise self.error(f"cannot make a table out of df_1 ({type(value).__name__})") from None

    def resolve(self, key: str, *, required: bool = True) -> Any:
        """The value behind config[key]: a variable of the chart code, else a column of df_1."""
        name = self.config.get(key)
        if name is None or name == "":
            if required:
                raise self.error(f"configuration.{key} is not set", hint=f"name the variable or column to use as {key}")
            return None
        if self.namespace is not None and isinstance(name, str) and name in self.namespace:
            return self.namespace[name]
        try:
            frame = self.frame()
        except ChartError:
            frame = None
        if frame is not None and name in frame.columns:
            return frame[name]
        where = "the chart code defines no variable" if self.namespace is not None else "df_1 has no column"
        raise self.error(
            f"configuration.{key} names {name!r} but {where} of that name",
            hint="define it in the chart code" if self.namespace is not None else "add chart code or fix the name",
        )


