"""The output formats (``--formats``): which exist, the extra each needs, a typed copy's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from morphseq_stages.errors import UserError

FORMATS = ("csv", "parquet", "h5ad")
EXTRA = {"parquet": ("pyarrow.parquet", "parquet"), "h5ad": ("anndata", "anndata")}
SUFFIX = {"parquet": ".parquet", "h5ad": ".h5ad"}


def parse_formats(value: str | Any) -> tuple[str, ...]:
    """``"csv,parquet"`` -> ("csv", "parquet"); csv is always written (df03.csv is canonical)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    asked = [str(v).strip().lower() for v in items if str(v).strip()]
    for f in asked:
        if f not in FORMATS:
            raise UserError(f"unknown format {f!r} in --formats (choose from {', '.join(FORMATS)})")
    return tuple(f for f in FORMATS if f == "csv" or f in asked)


def require(fmt: str) -> None:
    """A clear one-line error naming the extra when a format's library is missing."""
    module, extra = EXTRA[fmt]
    try:
        __import__(module)
    except ImportError:
        raise UserError(f"--formats {fmt} needs {module.split('.')[0]}: pip install 'morphseq-stages[{extra}]'") from None


def sibling(path: Path, fmt: str) -> Path:
    return path.with_suffix(SUFFIX[fmt])
