"""``--report``: one self-contained HTML page about df03, with the snips behind its embedding.

The page shows, for the df03 on disk:

- coverage per experiment (bars and a table): rows embedded, not embedded yet (the snip
  image exists: ``--generate-missing-latents`` would embed them), unreadable image, no
  snip image, other; then the snip ids of unreadable images;
- the snips to look at first: the most atypical of all experiments (see below);
- an interactive 2-D projection of z_mu (PCA; UMAP when ``umap-learn`` is installed):
  hovering or clicking a point shows its snip's thumbnail, snip_id, experiment and
  metadata beside the plot; the points are coloured by experiment or by any df03 column
  (``--report-color-by predicted_stage_hpf,genotype``: a menu switches; numeric columns
  on a continuous scale); the galleries' most atypical snips are ringed. Beyond
  ``POINT_BUDGET`` embedded rows a fixed random sample is drawn (the page says so), plus
  the ringed snips;
- a gallery per experiment: its snips nearest its mean (what it looks like) and its most
  atypical ones, scored by their mean distance to their k nearest neighbours among all
  rows (relative to the median row): a segmentation failure, an off-centre or dead embryo
  sits far from every experiment's rows;
- drift per experiment, with the drift an experiment of the same n has by chance (random
  draws of n rows), so that a 4-row experiment is not called apart for its size alone;
- df03's provenance (from its sidecar: the run that wrote it, model, weights sha256,
  inputs, versions) as tables, the full JSON folded away.

The report is an output like the typed copies: recorded in df03's sidecar with the sha256
of the df03 it describes and the options it was made with (``report_spec``), current
(not rewritten) while both are unchanged; rewritten with df03. ``write`` draws the page.

Plotly, not Bokeh: measured on this machine with 200,000 points coloured by 12
experiments (WebGL scatter, inline library, headless Chromium with software GL), Plotly's
page was 14.6 MB and drew in 8.1 s, Bokeh's 11.9 MB and 17.1 s (its legend inside the
plot, over the points). Plotly's library is inlined once (about 4.7 MB): the page works
offline. Thumbnails are JPEG data URIs made with Pillow, for the drawn points and the
galleries only.
"""
