"""The --report page as a person sees it: rendered by headless Chromium, offline.

Debian's ``chromium`` (``.ci/run`` installs it); skipped where it is absent. Set
``MORPHSEQ_REPORT_SCREENSHOT=docs/images/report.png`` to keep the screenshot (the docs'
picture of the page).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from morphseq_build06.testing import QC_MODEL, make_qc_root

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
pytest.importorskip("plotly", reason="--report needs the [report] extra")
pytest.importorskip("torch")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
         "--window-size=1400,2600", "--virtual-time-budget=20000")
# first thing in the page: console errors and uncaught exceptions become log lines we can find
WATCH = ("<script>(function(){var e=console.error;console.error=function(){"
         "console.log('CONSOLE-ERROR: '+[].join.call(arguments,' '));e.apply(console,arguments)};"
         "window.addEventListener('error',function(ev){console.log('CONSOLE-ERROR: '+ev.message)});})();</script>")
# once loaded: move the mouse onto the first point, then note what the page shows
PROBE = ("<script>window.addEventListener('load',function(){setTimeout(function(){"
         "var gd=document.getElementById('projection'),fl=gd._fullLayout,box=gd.querySelector('.main-svg')"
         ".getBoundingClientRect();"
         "var x=box.left+fl._size.l+fl.xaxis.l2p(gd._fullData[0].x[0]),"
         "y=box.top+fl._size.t+fl.yaxis.l2p(gd._fullData[0].y[0]);"
         "gd.querySelector('.nsewdrag').dispatchEvent(new MouseEvent('mousemove',"
         "{clientX:x,clientY:y,bubbles:true}));"
         "setTimeout(function(){"
         "var shown=[].filter.call(document.querySelectorAll('.tile img'),function(i){return i.naturalWidth>0});"
         "document.body.setAttribute('data-probe',['plot='+!!gd.querySelector('.main-svg'),"
         "'points='+gd.querySelectorAll('canvas').length,'hover='+!!document.querySelector('#snip img'),"
         "'gallery='+shown.length,'coverage='+document.querySelectorAll('#coverage tr').length].join(' '));"
         "},300)},500)});</script>")


def chromium(page: Path, tmp_path: Path, *what: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *what, page.as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_in_chromium_without_errors(tmp_path, cli):
    synth, spoiled = make_qc_root(tmp_path / "qc")
    code, _, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", QC_MODEL,
                       "--generate-missing-latents", "--report-color-by", "predicted_stage_hpf")
    assert code == 0, err
    report = synth.df02.with_name("embryo_metadata_df03_report.html")
    page = report.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + WATCH, 1).replace("</body>", PROBE + "</body>", 1))

    dom = chromium(probed, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    logs = dom.stderr
    errors = [line for line in logs.splitlines() if "CONSOLE-ERROR" in line or "Uncaught" in line]
    assert not errors, errors
    probe = dict(kv.split("=") for kv in re.search(r'data-probe="([^"]*)"', dom.stdout).group(1).split())
    assert probe["plot"] == "true" and int(probe["points"]) >= 1  # the projection, drawn with WebGL
    assert probe["hover"] == "true"  # hovering a point shows its snip
    assert int(probe["gallery"]) >= 10  # gallery thumbnails decoded
    assert int(probe["coverage"]) == 4  # the coverage table: header + 3 experiments

    shot = tmp_path / "report.png"
    done = chromium(report, tmp_path, f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if "Uncaught" in line]
    keep = os.environ.get("MORPHSEQ_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
