"""Figures of section 4 (GDM-F latents): Fig. 4a/4b curves, rows of edited images (Figs. 3, 6–9), the
factor × band matrix, Table 2 as a heat map, the Remark 4.1 whiteness bars and traversal exclusivity.

Import as ``from gdmkit.plotting import latents as latent_plots``. Inputs are tensors, pandas frames
and xarray objects with named dimensions; every function returns a Figure.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from torch import Tensor

from ._common import LEGEND_SIZE, distinct_colors, fit_titles, log_axis, plt, readable_ticks, set_title
from .images import image_grid

__all__ = ["variance_curves", "reconstruction_curves", "image_rows", "sensitivity_heatmaps", "grid_heatmap",
           "whiteness_bars", "exclusivity_bars"]


def _bands(ax, starts: Sequence[int]) -> None:
    for i, s in enumerate(starts):
        ax.axvline(s, color="0.5", ls=":", lw=1, label="band start" if i == 0 else None)


def variance_curves(df, starts: Sequence[int] = (), reference=None, paper_band: tuple[float, float] | None = None,
                    threshold: float | None = None,
                    title: str = "Fig. 4a: perceptual variance with the lowest m components fixed"):
    """Fig. 4a: one panel per feature map; PV(m) / PV(0) against m, one line per model (mean ± std over
    base latents, as given).

    df : DataFrame with columns feature, model, m, pv (mean), pv_std; reference : optional DataFrame
    with feature, m, pv (a closed form), drawn dashed. ``starts``: band starts (dotted lines).
    ``paper_band``: (m_lo, m_hi) shaded, the paper's semantic band scaled to this image (GDM §4.2: 400–700
    of 4096 components); ``threshold``: a PV(m) / PV(0) level drawn dashed (a claim's).
    """
    feats = list(dict.fromkeys(df["feature"]))
    fig, axes = plt().subplots(1, len(feats), figsize=(4.0 * len(feats), 3.3), squeeze=False)
    for ax, f in zip(axes[0], feats):
        part = df[df["feature"] == f]
        for i, (model, p) in enumerate(part.groupby("model", sort=False)):
            p = p.sort_values("m")
            v0 = float(p["pv"].iloc[0])
            ax.errorbar(p["m"], p["pv"] / v0, yerr=p["pv_std"] / v0, marker="o", ms=3, capsize=2,
                        label=str(model), color=f"C{i}")
        if reference is not None and f in set(reference["feature"]):
            r = reference[reference["feature"] == f].sort_values("m")
            ax.plot(r["m"], r["pv"] / float(r["pv"].iloc[0]), "k--", lw=1, label="closed form")
        _bands(ax, starts)
        if paper_band is not None:
            ax.axvspan(*paper_band, color="C3", alpha=0.12, lw=0, label="paper's semantic band (10–17 %)")
        if threshold is not None:
            ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"PV(m) / PV(0) = {threshold:g}")
        ax.set(xlabel="m (lowest components fixed, per channel)", ylabel="PV(m) / PV(0)")
        set_title(ax, f"φ = {f}")
        ax.legend(fontsize=LEGEND_SIZE)
        readable_ticks(ax)
    fig.suptitle(title, fontsize=10)
    fit_titles(fig)
    return fig


def reconstruction_curves(df, starts: Sequence[int] = (),
                          title: str = "Fig. 4b: reconstruction from the lowest m encoded components"):
    """Fig. 4b: MSE of decode(keep rank < m, resample the rest) against m, per model (mean ± sem; log y).

    df : DataFrame with columns model, m, mse, mse_sem.
    """
    fig, ax = plt().subplots(figsize=(5.0, 3.3))
    for i, (model, p) in enumerate(df.groupby("model", sort=False)):
        p = p.sort_values("m")
        ax.errorbar(p["m"], p["mse"], yerr=p["mse_sem"], marker="o", ms=3, capsize=2, label=str(model),
                    color=f"C{i}")
    _bands(ax, starts)
    ax.set(xlabel="m (lowest encoded components kept, per channel)", ylabel="MSE per pixel")
    log_axis(ax, "y")
    ax.legend(fontsize=LEGEND_SIZE)
    set_title(ax, title)
    readable_ticks(ax)
    fit_titles(fig)
    return fig


def image_rows(rows: Mapping[str, Tensor], col_titles: Sequence[str] | None = None, title: str = "",
               size: float = 1.1, xlabel: str = ""):
    """Rows of images (Figs. 3, 6–9): ``rows`` {row label: (W, C, H, W) images}, one image per column."""
    n_cols = max(len(x) for x in rows.values())
    fig, axes = plt().subplots(len(rows), n_cols, figsize=(size * n_cols + 1.6, size * len(rows) + 0.7),
                               squeeze=False)
    for r, (name, x) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(x):
                ax.axis("off")
                continue
            image_grid(ax, x[c:c + 1], 1, pad=0)
            if r == 0 and col_titles is not None:
                set_title(ax, str(col_titles[c]), fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    if xlabel:
        fig.supxlabel(xlabel, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sensitivity_heatmaps(mats: Mapping[str, object], title: str = "factor × band sensitivity",
                         label: str = "mean |Δ factor| / mean |Δ| between unrelated images"):
    """The factor × band matrices side by side, one shared colour scale with its colour bar, values
    written in the cells. ``mats``: {model: xarray.DataArray (factor, band)}."""
    vmax = max(float(np.nanmax(m.values)) for m in mats.values())
    fig, axes = plt().subplots(1, len(mats), figsize=(3.4 * len(mats) + 1.0, 3.2), squeeze=False,
                               layout="constrained")
    import matplotlib as mpl

    norm = mpl.colors.Normalize(0.0, vmax if vmax > 0 else 1.0)  # one colour scale for every panel
    im = None
    for ax, (name, m) in zip(axes[0], mats.items()):
        v = np.asarray(m.values, dtype=float)
        im = ax.imshow(v, cmap="viridis", norm=norm, aspect="auto")
        for (i, j), val in np.ndenumerate(v):
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if val < 0.6 * vmax else "black")
        ax.set_xticks(range(v.shape[1]), [str(b) for b in m["band"].values])
        ax.set_yticks(range(v.shape[0]), [str(f) for f in m["factor"].values])
        ax.set(xlabel="band resampled (ranks)", ylabel="factor")
        ax.grid(False)
        set_title(ax, name)
        readable_ticks(ax)
    cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.9)
    cb.set_label(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def grid_heatmap(mean, std, row_label: str, col_label: str, title: str, label: str):
    """A (rows × columns) result grid as a heat map with "mean ± std" in the cells (Table 2).

    mean, std : pandas DataFrames with the same index (rows) and columns.
    """
    v = mean.to_numpy(float)
    fig, ax = plt().subplots(figsize=(1.6 * v.shape[1] + 2.4, 0.8 * v.shape[0] + 1.6), layout="constrained")
    im = ax.imshow(v, cmap="magma_r", aspect="auto")
    s = std.to_numpy(float)
    lo, hi = np.nanmin(v), np.nanmax(v)
    for (i, j), val in np.ndenumerate(v):
        ax.text(j, i, f"{val:.3g}\n± {s[i, j]:.2g}", ha="center", va="center", fontsize=8,
                color="white" if val > lo + 0.5 * (hi - lo) else "black")
    ax.set_xticks(range(v.shape[1]), [str(c) for c in mean.columns])
    ax.set_yticks(range(v.shape[0]), [str(r) for r in mean.index])
    ax.set(xlabel=col_label, ylabel=row_label)
    ax.grid(False)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(label, fontsize=8)
    set_title(ax, title)
    readable_ticks(ax)
    return fig


def whiteness_bars(df, title: str = "Remark 4.1: encoded latents against N(0, I)"):
    """Per band and model: the covariance ratio ‖zᵀz/N − I‖²/(d(d+1)/N) (1 = as white as prior draws,
    dashed), the mean of z² where ``df`` has it (1 for the prior, dashed; with N < d the covariance ratio
    cannot see shrunk latents, this panel can) and the KS rejection share. df : columns model, band,
    cov_ratio, ks_reject and optionally mean_sq (a 'prior' model row gives the sampled floor). The legend
    sits below the panels."""
    panels = [("cov_ratio", "covariance ratio (1 = white)", True)]
    if "mean_sq" in df:
        panels.append(("mean_sq", "mean of z² (1 = prior)", True))
    panels.append(("ks_reject", "share of components KS-rejected", False))
    models = list(dict.fromkeys(df["model"]))
    bands = list(dict.fromkeys(df["band"]))
    fig, axes = plt().subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4 + 0.2 * len(models) / 3))
    w, colors = 0.8 / len(models), distinct_colors(len(models))
    for ax, (col, ylab, log) in zip(axes, panels):
        for i, m in enumerate(models):
            p = df[df["model"] == m].set_index("band").reindex(bands)
            ax.bar(np.arange(len(bands)) + (i - (len(models) - 1) / 2) * w, p[col].to_numpy(float), w,
                   label=str(m), color=colors[i])
        ax.set_xticks(range(len(bands)), [str(b) for b in bands])
        ax.set(xlabel="band (ranks)", ylabel=ylab)
        readable_ticks(ax)
        if log:
            ax.axhline(1.0, color="k", ls="--", lw=1)
            log_axis(ax, "y")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(models), 4), fontsize=LEGEND_SIZE,
               frameon=False)
    fig.suptitle(title, fontsize=10)
    fit_titles(fig)
    fig.subplots_adjust(bottom=0.2 + 0.06 * ((len(models) - 1) // 4))
    return fig


def exclusivity_bars(df, chance: float, title: str = "Single-element traversals of the lowest band"):
    """Per traversed element: the share of its factor change on its main factor, per model; dotted:
    chance (1/F). df : columns model, element, share, main factor."""
    models = list(dict.fromkeys(df["model"]))
    elems = list(dict.fromkeys(df["element"]))
    fig, ax = plt().subplots(figsize=(max(5.0, 0.32 * len(elems) + 2.0), 3.4))
    w = 0.8 / len(models)
    for i, m in enumerate(models):
        p = df[df["model"] == m].set_index("element").reindex(elems)
        ax.bar(np.arange(len(elems)) + (i - (len(models) - 1) / 2) * w, p["share"].to_numpy(float), w,
               label=str(m), color=f"C{i}")
    ax.axhline(chance, color="k", ls=":", lw=1, label="chance (1/F)")
    ax.set_xticks(range(len(elems)), elems, rotation=90)
    ax.set(xlabel="element (channel, k_h, k_w)", ylabel="share on main factor", ylim=(0, 1))
    ax.legend(fontsize=LEGEND_SIZE)
    set_title(ax, title)
    readable_ticks(ax)
    fit_titles(fig)
    return fig
