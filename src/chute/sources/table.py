"""Parquet and CSV files as a source: columns become fields, read through pyarrow in blocks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from chute._internal.require import require
from chute.errors import FormatError, SpecError, explain
from chute.sources.base import Rows, row_indices
from chute.spec import Field, Spec

__all__ = ["TableSource", "from_table", "stream_table"]


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
        self._spec = _spec(table.schema, pa)
        self._columns = _columns(self._spec, table.combine_chunks(), path)

    @property
    def spec(self) -> Spec:
        return self._spec

    def __len__(self) -> int:
        return len(self._columns[0])

    def fingerprint(self) -> str:
        from chute.resume import sampled_rows

        return sampled_rows([c for c in self._columns if isinstance(c, np.ndarray) and not c.dtype.hasobject])

    def read_sample(self, index: int) -> list[Any]:
        return [c[index] for c in self._columns]

    def read_rows(self, rows: Rows) -> list[Any]:
        which = rows if isinstance(rows, slice) else row_indices(rows)
        return [c[which] for c in self._columns]


def _spec(schema: Any, pa: Any) -> Spec:
    fields = tuple(_field(name, t, pa) for name, t in zip(schema.names, schema.types, strict=True))
    return Spec(fields, {f.name: i for i, f in enumerate(fields)})


def _columns(spec: Spec, table: Any, path: str) -> list[np.ndarray]:
    """One numpy column per field of a table or record batch; missing values are an error."""
    out = []
    for field in spec.fields:
        column = table.column(field.name)
        if column.null_count:
            raise SpecError(
                explain(
                    f"column {field.name!r} without missing values",
                    f"{column.null_count} nulls in {path}",
                    "Fill or drop them before converting.",
                )
            )
        out.append(_to_numpy(field, column.combine_chunks() if hasattr(column, "combine_chunks") else column))
    return out


def stream_table(
    path: str, rows_per_block: int = 65536
) -> tuple[Spec, Optional[int], Iterator[list[np.ndarray]]]:
    """A Parquet or CSV file read block by block (never whole): its spec, row count if known, blocks."""
    pa = _pyarrow()
    if not os.path.isfile(path):
        raise FormatError(explain("a Parquet or CSV file", repr(path), "Check the path."))
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            schema, total = parquet.schema_arrow, parquet.metadata.num_rows
            batches: Any = parquet.iter_batches(batch_size=rows_per_block)
        else:
            import pyarrow.csv as pcsv

            batches = pcsv.open_csv(path)
            schema, total = batches.schema, None
    except (pa.ArrowException, OSError) as error:
        raise FormatError(explain(f"a readable table at {path}", error, "Check the file.")) from None
    spec = _spec(schema, pa)
    return spec, total, (_columns(spec, batch, path) for batch in batches)


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
    from chute.dataset import Dataset

    if not os.path.isfile(path):
        raise FormatError(explain("a Parquet or CSV file", repr(path), "Check the path."))
    return Dataset(TableSource(path))
