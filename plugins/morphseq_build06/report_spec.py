"""The report as an output: its file name, what its page depends on besides df03 (its
options and layout version), and the checks of its options; what the plan needs of the
report, without drawing anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from morphseq_stages.errors import UserError

REPORT_NAME = "embryo_metadata_df03_report.html"
#: bump when the page changes: a page made by an older layout is out of date
LAYOUT = 2


def require_report() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise UserError("--report needs plotly: pip install 'morphseq-stages[report]'") from None


def made_with(color_by: Sequence[str]) -> dict[str, Any]:
    """What the report's content depends on besides df03: recorded, compared on later runs."""
    return {"report_layout": LAYOUT, "report_color_by": list(color_by)}


def check_color_by(color_by: Sequence[str], columns: Sequence[str], df02: Path) -> None:
    unknown = [c for c in color_by if c not in columns and c != "experiment"]
    if unknown:
        raise UserError(f"--report-color-by: no column {unknown[0]!r} in {df02} "
                        f"(columns: {', '.join(columns)})")
