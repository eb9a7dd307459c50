"""Parquet and CSV files as a source: columns become fields, read through pyarrow in blocks."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._require import require
from ..errors import FormatError, SpecError, explain
from ..spec import Field, Spec
from .base import Rows

__all__ = ["TableSource", "from_table"]


def _pyarrow() -> Any:
    return require("pyarrow", "to read Parquet and CSV", "pip install pyarrow")


def _field(name: str, arrow_type: Any, pa: Any) -> Field:
    types = pa.types
    if types.is_string(arrow_type) or types.is_large_string(arrow_type):
        return Field(name, np.dtype(object), (), "str")
    if types.is_binary(arrow_type) or types.is_large_binary(arrow_type):
        return Field(name, np.dtype(object), (), "bytes")
    if types.is_fixed_size_list(arrow_type) and (
        types.is_integer(arrow_type.value_type) or types.is_floating(arrow_type.value_type)
    ):
        return Field(name, np.dtype(arrow_type.value_type.to_pandas_dtype()), (arrow_type.list_size,))
    if types.is_integer(arrow_type) or types.is_floating(arrow_type) or types.is_boolean(arrow_type):
        return Field(name, np.dtype(arrow_type.to_pandas_dtype()), ())
    raise SpecError(
        explain(
            f"numeric, boolean, string, binary or fixed-size-list columns (column {name!r})",
            str(arrow_type),
            "Cast or drop the column before converting.",
        )
    )


class TableSource:
    """The rows of a Parquet or CSV file, held as one in-memory Arrow table, columns as fields."""

    vectorised = True  # read_rows is one gather per field, so conversion reads whole blocks

    def __init__(self, path: str) -> None:
        pa = _pyarrow()
        try:
            if path.endswith(".parquet"):
                import pyarrow.parquet as pq

                table = pq.read_table(path)
            else:
                import pyarrow.csv as pcsv

                table = pcsv.read_csv(path)
        except (pa.ArrowException, OSError) as error:
            raise FormatError(explain(f"a readable table at {path}", error, "Check the file.")) from None
        for column in table.columns:
            if column.null_count:
                raise SpecError(
                    explain("columns without missing values", f"nulls in {path}", "Fill or drop them first.")
                )
        fields = tuple(
            _field(name, t, pa) for name, t in zip(table.column_names, table.schema.types, strict=True)
        )
        self._spec = Spec(fields, {f.name: i for i, f in enumerate(fields)})
        self._columns = [_to_numpy(f, table.column(f.name).combine_chunks()) for f in fields]

    @property
    def spec(self) -> Spec:
        return self._spec

    def __len__(self) -> int:
        return len(self._columns[0])

    def read_sample(self, index: int) -> list[Any]:
        return [c[index] for c in self._columns]

    def read_rows(self, rows: Rows) -> list[Any]:
        return [c[rows] for c in self._columns]


def _to_numpy(field: Field, array: Any) -> np.ndarray:
    if field.kind in ("str", "bytes"):
        out = np.empty(len(array), dtype=object)
        out[:] = array.to_pylist()
        return out
    if field.shape:
        return array.values.to_numpy(zero_copy_only=False).reshape(len(array), *field.shape)
    return array.to_numpy(zero_copy_only=False)


def from_table(path: str) -> Any:
    """A :class:`chute.Dataset` over a Parquet (``.parquet``) or CSV file's columns."""
    from ..dataset import Dataset

    if not os.path.isfile(path):
        raise FormatError(explain("a Parquet or CSV file", repr(path), "Check the path."))
    return Dataset(TableSource(path))
