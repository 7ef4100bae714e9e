"""Figures for the notebooks: generative processes, sample panels, image grids, result-set charts.

Every function builds and returns a matplotlib Figure (seaborn style, see :func:`use_style`); saving
is :meth:`gdmkit.companion.Report.figure`'s job. Inputs are structured data, never display labels to
parse: images (N, C, H, W) in [-1, 1]; 2-D point clouds (N, 2); a *process* is a list of (t, x_t)
snapshots, t from 1 (noise) down to 0 (data); pandas DataFrames with named columns; the xarray result
sets the notebooks save.

Readability rules every figure follows: every Axes showing data has x and y labels (shared axes: on
the outer panels); tick labels are at least 8 pt; every colour scale has a colour bar (sample images
are pictures, drawn as RGB without one); log axes carry at least 3 labelled ticks; titles are shown
verbatim (no mathtext) and wrapped at spaces to fit, never losing a character.
"""
from __future__ import annotations

from .charts import bar_panel, efficiency_curves, loss_curves, order_quality, table1_bars, trend_lines
from .images import change_maps, groupings_panels, image_grid, image_panels, image_process
from .points import latent_variation_2d, scatter_panels, scatter_process, snapshots

__all__ = [
    "use_style", "snapshots", "scatter_panels", "scatter_process", "latent_variation_2d",
    "image_grid", "image_panels", "image_process", "groupings_panels", "change_maps",
    "loss_curves", "bar_panel", "table1_bars", "order_quality", "efficiency_curves", "trend_lines",
]


def use_style() -> None:
    """Seaborn's whitegrid theme, small inline figures, nearest-neighbour image display."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    mpl.rcParams.update({"figure.dpi": 72, "image.interpolation": "nearest", "axes.titlesize": 10})
