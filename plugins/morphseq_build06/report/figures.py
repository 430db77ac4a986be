"""The report's Plotly figures: coverage bars and the projection with a snip behind each point.

Each figure becomes a ``<div>`` and a script calling the Plotly library, which the page
holds once, inline (see ``page``). Legends stand outside the plotting area, so they never
cover a bar or a point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COVERAGE_PARTS = (("embedded", "embedded", "#2b8a3e"),
                  ("not_yet", "not embedded yet (image exists)", "#f08c00"),
                  ("unreadable", "unreadable image", "#c92a2a"),
                  ("no_image", "no snip image", "#868e96"),
                  ("other", "other (non-finite latents)", "#5f3dc4"))
#: categories drawn in colours of their own; the rest of a column's values are "other"
MAX_CATEGORIES = 24
#: a numeric column with more distinct values than this is coloured on a continuous scale
CONTINUOUS_MIN_VALUES = 12
CONFIG = {"displaylogo": False, "responsive": True}


def _html(fig: Any, div_id: str, post_script: str | None = None) -> str:
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=CONFIG,
                       post_script=post_script)


def coverage_figure(table: Sequence[Mapping[str, Any]]) -> str:
    import plotly.graph_objects as go

    names = [t["experiment"] for t in table]
    fig = go.Figure()
    for key, label, colour in COVERAGE_PARTS:
        values = [t[key] for t in table]
        if key not in ("embedded", "not_yet") and not any(values):
            continue
        fig.add_trace(go.Bar(y=names, x=values, name=label, orientation="h", marker_color=colour,
                             hovertemplate="%{y}: %{x} rows " + label + "<extra></extra>"))
    fig.update_layout(barmode="stack", height=140 + 26 * max(1, len(names)), margin=dict(l=10, r=10, t=40, b=40),
                      yaxis=dict(autorange="reversed", type="category"), xaxis_title="df03 rows",
                      # above the bars, outside the plotting area
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"),
                      template="plotly_white")
    return _html(fig, "coverage-chart")


def _is_continuous(values: Sequence[str]) -> np.ndarray | None:
    """The values as floats when the column is numeric with many distinct values, else None."""
    filled = [v for v in values if v.strip()]
    if not filled:
        return None
    try:
        numbers = np.array([float(v) if v.strip() else np.nan for v in values])
    except ValueError:
        return None
    return numbers if len(np.unique(numbers[np.isfinite(numbers)])) > CONTINUOUS_MIN_VALUES else None


def _categories(values: Sequence[str]) -> list[str]:
    labels = [v if v.strip() else "(empty)" for v in values]
    names, counts = np.unique(labels, return_counts=True)
    keep = set(names[np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]].tolist())
    return [v if v in keep else "other" for v in labels]


def projection_figure(coords: np.ndarray, method: str, colourings: Mapping[str, Sequence[str]],
                      hover: Sequence[Sequence[str]], hover_names: Sequence[str], marked: np.ndarray) -> str:
    """The 2-D projection; one group of traces per colouring (a menu switches between them).

    ``colourings``: name -> each point's value ("experiment" first); ``hover``: per point,
    its snip_id, experiment and metadata (``hover_names``); ``marked``: the points drawn
    ringed (the galleries' most atypical snips). Each point's ``customdata`` starts with its
    index, which the page's hover handler uses to show its thumbnail.
    """
    import plotly.graph_objects as go

    custom = np.column_stack([np.arange(len(coords)).astype(str), np.asarray(hover, dtype=object).reshape(len(coords), -1)])
    lines = "<br>".join(f"{n}: %{{customdata[{j + 3}]}}" for j, n in enumerate(hover_names))
    template = "<b>%{customdata[1]}</b><br>experiment: %{customdata[2]}" + (f"<br>{lines}" if lines else "") + \
               "<extra></extra>"
    size = float(np.clip(12 - 2 * np.log10(max(len(coords), 1)), 3, 9))
    fig = go.Figure()
    groups: list[tuple[str, list[int], bool]] = []
    for name, values in colourings.items():
        first, numbers = len(fig.data), _is_continuous(values)
        if numbers is not None:
            fig.add_trace(go.Scattergl(
                x=coords[:, 0], y=coords[:, 1], mode="markers", name=name, customdata=custom, hovertemplate=template,
                marker=dict(size=size, color=numbers, colorscale="Viridis", showscale=True,
                            colorbar=dict(title=dict(text=name), x=1.02)), showlegend=False))
        else:
            cats = np.array(_categories(values))
            for cat in dict.fromkeys(cats.tolist()):
                m = cats == cat
                fig.add_trace(go.Scattergl(x=coords[m, 0], y=coords[m, 1], mode="markers", name=cat,
                                           customdata=custom[m], hovertemplate=template, marker=dict(size=size),
                                           legendgroup=name))
        groups.append((name, list(range(first, len(fig.data))), numbers is not None))
    ring = len(fig.data)
    if marked.any():
        fig.add_trace(go.Scattergl(x=coords[marked, 0], y=coords[marked, 1], mode="markers",
                                   name="most atypical (see the galleries)", customdata=custom[marked],
                                   hovertemplate=template,
                                   marker=dict(size=size + 9, symbol="circle-open", color="black",
                                               line=dict(width=2))))
    buttons = []
    for name, traces, continuous in groups:
        visible = [i in traces or i >= ring for i in range(len(fig.data))]
        buttons.append(dict(label=name, method="update",
                            args=[{"visible": visible}, {"legend.title.text": "" if continuous else name}]))
    for i in range(len(fig.data)):
        fig.data[i].visible = i in groups[0][1] or i >= ring
    fig.update_layout(
        height=640, template="plotly_white", hovermode="closest", dragmode="zoom",
        margin=dict(l=10, r=10, t=70, b=40), xaxis_title=f"{method} 1", yaxis_title=f"{method} 2",
        legend=dict(title=dict(text=groups[0][0]), x=1.02, y=1, xanchor="left", itemsizing="constant"),
        updatemenus=[dict(type="buttons", direction="right", x=0.08, y=1.02, xanchor="left", yanchor="bottom",
                          buttons=buttons, showactive=True, pad=dict(r=4, t=2))] if len(buttons) > 1 else [],
        annotations=[dict(text="colour by:", x=0, y=1.035, xref="paper", yref="paper", showarrow=False,
                          xanchor="left", yanchor="bottom")] if len(buttons) > 1 else [])
    # the hovered (or clicked) point's thumbnail in the panel beside the plot
    post = ("var gd=document.getElementById('{plot_id}');"
            "gd.on('plotly_hover',function(e){showSnip(e.points[0].customdata[0])});"
            "gd.on('plotly_click',function(e){showSnip(e.points[0].customdata[0])});")
    return _html(fig, "projection", post)
