"""Figures of column-wise generation (GUD Fig. 6–8) and of extension measured against the truth.

Import as ``from gdmkit.plotting import extension as extension_plots``. Inputs are structured data:
DataFrames from :func:`gdmkit.extension.column_curves` and :func:`gdmkit.stationarity.drift_profile`,
images (N, C, H, W) in [-1, 1], region labels from :func:`gdmkit.extension.column_regions`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ._common import LEGEND_SIZE, fit_titles, plt, readable_ticks, set_title
from .images import PIXEL_X, PIXEL_Y, image_grid

__all__ = ["schedule_curves", "strips", "regions", "drift_lines", "sweep_map", "reconstructions"]

REGION_COLOURS = ("#f2c12e", "#3aa655", "#3b6fd1")   # frozen (yellow), active (green), yet to generate (blue)
REGION_NAMES = ("frozen (generated)", "active (β ≠ 0)", "yet to generate")


def schedule_curves(curves: Mapping[float, "object"], quantities=("gamma", "beta", "alpha")):
    """GUD Fig. 6: one column of panels per softness b, rows γ_i(t), β_i(t), α_i(t), a line per column i.

    ``curves``: {b: DataFrame from :func:`gdmkit.extension.column_curves`}.
    """
    labels = {"gamma": "γ_i(t)", "beta": "β_i(t)", "alpha": "α_i(t)"}
    fig, axes = plt().subplots(len(quantities), len(curves), squeeze=False, sharex=True,
                               figsize=(3.0 * len(curves), 2.1 * len(quantities)))
    cmap = plt().get_cmap("viridis")
    for j, (b, df) in enumerate(curves.items()):
        L = int(df["column"].max())
        for r, q in enumerate(quantities):
            ax = axes[r, j]
            for i, part in df.groupby("column"):
                ax.plot(part["t"], part[q], color=cmap((i - 1) / max(L - 1, 1)), lw=1.4, label=f"i = {i}")
            ax.set_ylabel(labels.get(q, q))
            if r == len(quantities) - 1:
                ax.set_xlabel("t")
            readable_ticks(ax)
        set_title(axes[0, j], f"b = {b:g}")
    axes[0, -1].legend(fontsize=LEGEND_SIZE, title="column", title_fontsize=LEGEND_SIZE, loc="upper left")
    fit_titles(fig)
    return fig


def strips(panels: Mapping[str, Tensor], window: int, k: int | None = None, n_show: int = 3,
           height: float = 0.9):
    """Long strips (N, C, H, W_total), ``n_show`` of each, one panel per name; ticks every window width."""
    n_rows = sum(min(n_show, len(x)) for x in panels.values())
    width = max(x.shape[-1] for x in panels.values())
    fig, axes = plt().subplots(len(panels), 1, figsize=(min(16, 2 + width / 16 * 1.1), height * n_rows + 0.8),
                               squeeze=False)
    for ax, (name, x) in zip(axes[:, 0], panels.items()):
        x = x[:n_show]
        image_grid(ax, x, nrow=1, pad=1)
        H = x.shape[-2]
        ticks = list(range(0, x.shape[-1] + 1, window))
        ax.set_xticks([1 + t for t in ticks], [str(t) for t in ticks])
        ax.set_yticks([1 + H / 2 + r * (H + 1) for r in range(len(x))], [str(r) for r in range(len(x))])
        ax.set_xlabel(PIXEL_X)
        ax.set_ylabel("strip")
        set_title(ax, name)
        readable_ticks(ax)
    fit_titles(fig)
    return fig


def regions(windows: Tensor, labels: Tensor, times: Sequence[float], size: float = 2.0):
    """GUD Fig. 7 (right): windows at successive shifts (R, C, H, L) with the frozen / active /
    yet-to-generate columns (``labels`` (L,) or (R, L)) shaded above them."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    R = len(windows)
    labels = labels.expand(R, -1) if labels.ndim == 1 else labels
    fig, axes = plt().subplots(2, R, figsize=(size * R, size * 1.35), squeeze=False,
                               gridspec_kw={"height_ratios": [1, 5]})
    cmap = ListedColormap(REGION_COLOURS)
    for j in range(R):
        ax = axes[0, j]
        ax.imshow(labels[j][None].numpy(), cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto")
        ax.set_yticks([])
        ax.set_xticks([])
        set_title(ax, f"shift {j}, t = {times[j]:.3f}")
        image_grid(axes[1, j], windows[j][None], nrow=1, pad=0)
        axes[1, j].set_xlabel(PIXEL_X)
    axes[1, 0].set_ylabel(PIXEL_Y)
    axes[0, 0].set_ylabel("region")
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(REGION_COLOURS, REGION_NAMES)],
               loc="lower center", ncol=3, fontsize=LEGEND_SIZE)
    fit_titles(fig)
    fig.subplots_adjust(bottom=0.2)
    return fig


def drift_lines(df, quantities=("spectrum_log_error", "cov_error", "var_ratio"), hue: str = "source"):
    """Statistics per position along the strip (rows of :func:`gdmkit.stationarity.drift_profile` with a
    ``hue`` column), one panel per quantity, one line per source (the truth's floor among them)."""
    labels = {"spectrum_log_error": "spectral log-error", "cov_error": "lag-covariance error",
              "var_ratio": "pixel variance / truth"}
    fig, axes = plt().subplots(1, len(quantities), figsize=(3.6 * len(quantities), 3.0), squeeze=False)
    for ax, q in zip(axes[0], quantities):
        for name, part in df.groupby(hue, sort=False):
            ax.plot(part["position"], part[q], marker="o", ms=3, label=str(name))
        if q == "var_ratio":
            ax.axhline(1.0, ls="--", lw=1, color="k")
        ax.set(xlabel="strip position (first column of the block, px)", ylabel=labels.get(q, q))
        readable_ticks(ax)
    axes[0, 0].legend(fontsize=LEGEND_SIZE)
    fit_titles(fig)
    return fig


def sweep_map(df, value: str, L: int, title: str = "", floor: float | None = None):
    """The k × b sweep: ``value`` per (b, k) as a coloured grid (with a colour bar) and the derived boundary
    b = (L − 1)/(2L − k) of exact restoration (white line; feasible above it)."""
    bs, ks = sorted(df["b"].unique()), sorted(df["k"].unique())
    grid = np.full((len(bs), len(ks)), np.nan)
    for _, row in df.iterrows():
        grid[bs.index(row["b"]), ks.index(row["k"])] = row[value]
    fig, ax = plt().subplots(figsize=(1.0 + 0.9 * len(ks), 0.8 + 0.6 * len(bs)))
    im = ax.imshow(grid, origin="lower", cmap="magma_r", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8,
                    color="white" if v > np.nanmean(grid) else "black")
    kk = np.linspace(0, len(ks) - 1, 200)
    k_val = np.interp(kk, range(len(ks)), ks)
    b_bound = (L - 1) / (2 * L - k_val)
    ax.plot(kk, np.interp(b_bound, bs, range(len(bs)), left=-0.5, right=len(bs) - 0.5), color="white", lw=2,
            label="b = (L-1)/(2L-k)")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(bs)), [f"{b:g}" for b in bs])
    ax.set(xlabel="k (columns per shift)", ylabel="b (softness)")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(value + ("" if floor is None else f" (truth floor {floor:.2g})"))
    ax.legend(fontsize=LEGEND_SIZE, loc="upper right", bbox_to_anchor=(1.0, -0.2))  # below the axes
    set_title(ax, title)
    readable_ticks(ax)
    fit_titles(fig)
    return fig


def reconstructions(rows: Mapping[str, tuple[Tensor, Tensor, Tensor]],
                    kept: Mapping[str, Tensor] | None = None, size: float = 1.2):
    """GUD Fig. 8: per named setting, for each image: the original, the noised image, S reconstructions.

    ``rows``: {name: (x (B, C, H, W), noised (B, C, H, W), recons (S, B, C, H, W))}; ``kept``: {name: (W,)
    bool} marks the kept columns with a yellow bar under the noised image.
    """
    n_img = sum(len(x) for x, _, _ in rows.values())
    n_col = 2 + max(r.shape[0] for _, _, r in rows.values())
    fig, axes = plt().subplots(n_img, n_col, figsize=(size * n_col, size * n_img + 0.6), squeeze=False)
    r = 0
    for name, (x, noised, recons) in rows.items():
        for i in range(len(x)):
            cells = [x[i], noised[i]] + [recons[s, i] for s in range(recons.shape[0])]
            for c, img in enumerate(cells):
                ax = axes[r, c]
                image_grid(ax, img[None], nrow=1, pad=0)
                if c == 1 and kept is not None and name in kept:
                    cols = torch.nonzero(kept[name]).flatten()
                    if len(cols):
                        ax.axvspan(float(cols.min()) - 0.5, float(cols.max()) + 0.5, ymin=0, ymax=0.06,
                                   color=REGION_COLOURS[0])
                if r == 0:
                    set_title(ax, ["test image", "noised to t"][c] if c < 2 else f"seed {c - 2}", fontsize=9)
            for c in range(len(cells), n_col):
                axes[r, c].axis("off")
            axes[r, 0].set_ylabel(name if i == 0 else "", fontsize=8)
            r += 1
    fit_titles(fig)
    return fig
