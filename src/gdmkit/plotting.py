"""Figures for the notebooks: generative processes, sample panels, image grids, loss curves.

Every function builds and returns a matplotlib Figure (seaborn style, see :func:`use_style`); saving
is :meth:`gdmkit.results.Report.figure`'s job. Images are (N, C, H, W) in [-1, 1]; 2-D point clouds
are (N, 2); a *process* is a list of (t, x_t) snapshots, t from 1 (noise) down to 0 (data).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "use_style", "snapshots", "scatter_panels", "scatter_process", "latent_variation_2d",
    "image_grid", "image_panels", "image_process", "loss_curves", "bar_panel",
]

Process = Sequence[tuple[float, Tensor]]


def use_style() -> None:
    """Seaborn's whitegrid theme, small inline figures, nearest-neighbour image display."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    mpl.rcParams.update({"figure.dpi": 72, "image.interpolation": "nearest", "axes.titlesize": 10})


def _plt():
    import matplotlib.pyplot as plt

    return plt


def snapshots(frames: Sequence[tuple], final: Tensor, times: Sequence[float]) -> list[tuple[float, Tensor]]:
    """Pick the states nearest to ``times`` from a trajectory.

    frames : list of (t, x_t, ...) as filled by :func:`gdmkit.sampling.trajectory_recorder` (the state
        at the start of every step); final : the state at t = 0 (the sampler's output).
    """
    pool = [(float(f[0]), f[1]) for f in frames] + [(0.0, final)]
    out = []
    for t in times:
        tt, x = min(pool, key=lambda p: abs(p[0] - t))
        out.append((tt, x))
    return out


def _square(ax, lim: float) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)


def scatter_panels(panels: Mapping[str, Tensor], lim: float = 1.5, s: float = 2.0, alpha: float = 0.4):
    """One scatter plot per named point cloud (N, 2), side by side (x₁ horizontal, x₂ vertical)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels.items()):
        x = x.detach().cpu()
        ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, lw=0)
        ax.set_title(name)
        _square(ax, lim)
    fig.tight_layout()
    return fig


def scatter_process(rows: Mapping[str, Process], lim: float = 2.5, s: float = 2.0, alpha: float = 0.4):
    """Generative processes of 2-D samples (GDM Fig. 1a): one row per model, one column per time."""
    plt = _plt()
    n_cols = max(len(p) for p in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.1 * n_cols, 2.2 * len(rows)), squeeze=False)
    for r, (name, proc) in enumerate(rows.items()):
        for c, (t, x) in enumerate(proc):
            ax = axes[r, c]
            x = x.detach().cpu()
            ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, lw=0)
            ax.set_title(f"t = {t:.2f}")
            _square(ax, lim)
        axes[r, 0].set_ylabel(name)
    fig.tight_layout()
    return fig


def latent_variation_2d(panels: Mapping[str, Mapping[str, Tensor]], lim: float = 1.5):
    """GDM Fig. 1c for 2-D data: decoded points as one latent group is varied.

    panels : {model: {variation label: Tensor (R, M, 2)}} — R base latents, M values of the varied
        group each; each base latent's M outputs are drawn as a connected line of markers.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 3.0), squeeze=False)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for ax, (name, variations) in zip(axes[0], panels.items()):
        for (label, pts), col in zip(variations.items(), colors):
            pts = pts.detach().cpu()
            for r in range(pts.shape[0]):
                ax.plot(pts[r, :, 0], pts[r, :, 1], "-o", ms=2.5, lw=0.8, color=col, alpha=0.7,
                        label=label if r == 0 else None)
        ax.set_title(name)
        _square(ax, lim)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def image_grid(ax, images: Tensor, nrow: int | None = None, pad: int = 1) -> None:
    """Draw images (N, C, H, W) in [-1, 1] as one tiled picture on ``ax`` (grey for C = 1)."""
    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) / 2)
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    if c == 1:
        ax.imshow(canvas[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(canvas.permute(1, 2, 0).clamp(0, 1))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def image_panels(panels: Mapping[str, Tensor], nrow: int | None = None, size: float = 2.6):
    """One image grid per named batch (N, C, H, W), side by side."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size + 0.3), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels.items()):
        image_grid(ax, x, nrow)
        ax.set_title(name)
    fig.tight_layout()
    return fig


def image_process(rows: Mapping[str, Process], nrow: int | None = None, size: float = 1.6):
    """Generative processes of images (GDM Fig. 2, 5, 13): one row per process, one column per time;
    each cell tiles the batch at that time."""
    plt = _plt()
    n_cols = max(len(p) for p in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(size * n_cols, size * len(rows) + 0.3), squeeze=False)
    for r, (name, proc) in enumerate(rows.items()):
        for c, (t, x) in enumerate(proc):
            image_grid(axes[r, c], x, nrow)
            axes[r, c].set_title(f"t = {t:.2f}", fontsize=8)
        for c in range(len(proc), n_cols):
            axes[r, c].axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def loss_curves(df, hue: str = "model", logy: bool = True):
    """Training losses from a DataFrame with columns step, loss and ``hue``."""
    import seaborn as sns

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    sns.lineplot(data=df, x="step", y="loss", hue=hue, ax=ax)
    if logy:
        ax.set_yscale("log")
    ax.set_title("training loss (mean per logging window)")
    fig.tight_layout()
    return fig


def bar_panel(df, x: str, y: str, hue: str | None = None, logy: bool = False, title: str = "",
              ref: Mapping[str, float] | None = None):
    """A seaborn bar chart of ``df``, optionally with labelled horizontal reference lines ``ref``."""
    import seaborn as sns

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax)
    for (label, v), ls in zip((ref or {}).items(), ["--", ":", "-."]):
        ax.axhline(v, ls=ls, color="k", lw=1, label=label)
    if logy:
        ax.set_yscale("log")
    if ref or hue:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    return fig
