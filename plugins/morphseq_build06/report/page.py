"""The report page's HTML around its figures: tables, galleries, provenance."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .stats import CHANCE_QUANTILE, DRAWS

e = html.escape

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1500px}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}tr.flag{background:#ffe3e3}
.note{color:#555;font-size:.92em;max-width:75em}
.wrap{display:flex;gap:1em;align-items:flex-start}#projection{flex:1;min-width:600px}
#snip{width:220px;min-height:260px;border:1px solid #ccc;padding:8px;font-size:.85em;position:sticky;top:8px}
#snip img{width:160px;image-rendering:auto;background:#000}
.tiles{display:flex;flex-wrap:wrap;gap:6px;margin:.3em 0 .8em}
.tile{width:118px;font-size:.72em;word-break:break-all;text-align:center}
.tile img{height:128px;max-width:118px;background:#000;display:block;margin:auto}
.bad{height:128px;background:repeating-linear-gradient(45deg,#c92a2a,#c92a2a 8px,#fff0f0 8px,#fff0f0 16px);
color:#fff;font-weight:bold;display:flex;align-items:center;justify-content:center;text-shadow:0 0 3px #000}
.exp{border-left:4px solid #ccc;padding-left:10px;margin:1em 0}
details pre{background:#f5f5f5;padding:1em;overflow:auto;max-height:40em}
"""

SHOW_SNIP = """
function showSnip(i){
  var d=SNIPS[+i]; if(!d) return; var box=document.getElementById('snip');
  box.innerHTML=(d[0]?'<img alt="snip" src="'+d[0]+'">':'<div class="bad" style="width:160px">image unreadable</div>')+
    '<div><b>'+d[1]+'</b></div><div>experiment: '+d[2]+'</div>'+d[3];
}
"""


@attrs.frozen(kw_only=True)
class Tile:
    snip_id: str
    experiment: str
    image: str | None  # data URI; None: unreadable
    caption: str = ""


def tiles(items: Sequence[Tile], with_experiment: bool = False) -> str:
    out = []
    for t in items:
        img = (f"<img alt='{e(t.snip_id)}' src='{t.image}'>" if t.image
               else "<div class='bad'>unreadable</div>")
        extra = f"<br><b>{e(t.experiment)}</b>" if with_experiment else ""
        caption = f"<br>{e(t.caption)}" if t.caption else ""
        out.append(f"<div class='tile' title='{e(t.caption or t.snip_id)}'>{img}{e(t.snip_id)}{extra}"
                   f"{caption if t.image else ''}</div>")
    return f"<div class='tiles'>{''.join(out)}</div>"


def coverage_table(table: Sequence[Mapping[str, Any]], generated: set[str]) -> str:
    rows = "".join(
        f"<tr><td>{e(t['experiment'])}{' <b>(generated this run)</b>' if t['experiment'] in generated else ''}</td>"
        f"<td>{t['rows']}</td><td>{t['embedded']}</td><td>{t['not_yet']}</td><td>{t['unreadable']}</td>"
        f"<td>{t['no_image']}</td><td>{t['other']}</td><td>{t['embedded'] / t['rows']:.1%}</td></tr>"
        for t in table if t["rows"])
    return ("<table id='coverage'><tr><th>experiment</th><th>rows</th><th>embedded</th>"
            "<th>not embedded yet<br>(image exists)</th><th>unreadable image</th><th>no snip image</th>"
            f"<th>other<br>(non-finite latents)</th><th>coverage</th></tr>{rows}</table>")


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def drift_table(drift: Sequence[Mapping[str, Any]]) -> str:
    def verdict(d: Mapping[str, Any]) -> str:
        if d["drift"] is None:
            return "no other rows to compare with"
        if d["beyond_chance"]:
            return f"apart: beyond what {d['rows']} random rows give"
        return "within chance"

    rows = "".join(
        f"<tr{' class=flag' if d['beyond_chance'] else ''}><td>{e(d['experiment'])}</td><td>{d['rows']}</td>"
        f"<td>{_num(d['drift'])}</td><td>{_num(d['chance'])}</td><td>{_num(d['p'], 3)}</td>"
        f"<td>{verdict(d)}</td></tr>" for d in drift)
    return (f"<p class=note>Drift: the distance between an experiment's mean z_mu and the mean of all other rows, "
            "in units of the typical within-experiment spread (root-mean-square distance of rows from their "
            "experiment's mean). An experiment of n rows drifts by chance alone, the more so the smaller n: "
            f"<i>chance at this n</i> is the {CHANCE_QUANTILE:.0%} quantile of the drift of {DRAWS} experiments of "
            "n rows drawn at random from all rows, and <i>p</i> the share of those draws that drift as far. "
            "An experiment is called apart only beyond that chance level, whatever its size.</p>"
            "<table id='drift'><tr><th>experiment</th><th>embedded rows (n)</th><th>drift</th>"
            f"<th>chance at this n ({CHANCE_QUANTILE:.0%})</th><th>p</th><th></th></tr>{rows}</table>")


def _cell(v: Any) -> str:
    if isinstance(v, list | dict):
        return f"<code>{e(json.dumps(v, default=str))}</code>"
    return e("-" if v is None or v == "" else str(v))


def provenance_section(provenance: Mapping[str, Any], note: str) -> str:
    p = provenance
    model, emb, paths_ = p.get("model", {}) or {}, p.get("embedder", {}) or {}, p.get("paths", {}) or {}
    facts = [
        ("df03", paths_.get("df03")), ("df02", paths_.get("df02")),
        ("df03 written by run", p.get("run_id")), ("at", p.get("created_at")), ("on host", p.get("host")),
        ("command", " ".join(p.get("argv", []) or [])), ("pipeline root commit", p.get("pipeline_root_git_commit")),
        ("model", model.get("name")), ("model folder", model.get("folder")),
        ("weights sha256", model.get("weights_sha256")), ("config sha256", model.get("config_sha256")),
        ("embedder", " ".join(str(emb.get(k)) for k in ("name", "plugin", "version") if emb.get(k))),
        ("latent store", paths_.get("latent_store")),
        ("z columns", f"{len((p.get('z') or {}).get('columns', []))} ({(p.get('z') or {}).get('resolved')})"
         if p.get("z") else None),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts if v not in (None, ""))
    versions = "".join(f"<tr><th>{e(k)}</th><td>{_cell(v)}</td></tr>" for k, v in (p.get("versions") or {}).items())
    inputs = p.get("inputs") or []
    shown = "".join(f"<tr><td>{e(str(i.get('path')))}</td><td><code>{e(str(i.get('sha256')))}</code></td></tr>"
                    for i in inputs[:40])
    more = f"<p class=note>and {len(inputs) - 40} more, in the JSON below</p>" if len(inputs) > 40 else ""
    options = "".join(f"<tr><th>{e(k)}</th><td>{_cell(v)}</td></tr>" for k, v in (p.get("options") or {}).items()
                      if v not in (None, False, [], ""))
    full = e(json.dumps(p, indent=2, default=str))
    if not p:
        return f"<p class=note>{e(note)}</p>"
    return (f"<p class=note>{e(note)}</p><table id='provenance' class='facts'>{table}</table>"
            f"<h3>Inputs</h3><table><tr><th>file</th><th>sha256</th></tr>{shown}</table>{more}"
            f"<div class='wrap'><div><h3>Versions</h3><table>{versions}</table></div>"
            f"<div><h3>Options</h3><table>{options}</table></div></div>"
            f"<details><summary>The full provenance (df03's sidecar, JSON)</summary><pre>{full}</pre></details>")


def page(*, title: str, plotly_js: str, sections: Sequence[tuple[str, str]], snips: list, summary: str) -> str:
    body = "".join(f"<h2 id='{e(anchor)}'>{e(heading)}</h2>{content}" for anchor, heading, content in
                   [(h.lower().replace(" ", "-"), h, c) for h, c in sections])
    toc = " · ".join(f"<a href='#{h.lower().replace(' ', '-')}'>{e(h)}</a>" for h, _ in sections)
    data = json.dumps(snips, separators=(",", ":")).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{STYLE}</style>
<script>{plotly_js}</script>
<script>var SNIPS={data};{SHOW_SNIP}</script>
</head><body>
<h1>{e(title)}</h1>
<p class=note>{summary}</p>
<p>{toc}</p>
{body}
</body></html>
"""
