"""Figures of 2-D point clouds (GDM Fig. 1a, 1c on a 2-D mixture): x₁ horizontal, x₂ vertical."""
from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

from torch import Tensor

from ._common import LEGEND_SIZE, fit_titles, plt, readable_ticks, set_title

Process = Sequence[tuple[float, Tensor]]


def snapshots(frames: Sequence[tuple], final: Tensor, times: Sequence[float]) -> list[tuple[float, Tensor]]:
    """Pick the states nearest to ``times`` from a trajectory.

    Parameters
    ----------
    frames : list of (t, x_t, ...)
        As filled by :func:`gdmkit.sampling.trajectory_recorder` (the state at the start of every step).
    final : Tensor
        The state at t = 0 (the sampler's output).
    times : sequence of float
        The times wanted; each gets the recorded state nearest to it.
    """
    pool = [(float(f[0]), f[1]) for f in frames] + [(0.0, final)]
    return [min(pool, key=lambda p: abs(p[0] - t)) for t in times]


def _points(x: Tensor, what: str) -> Tensor:
    x = x.detach().cpu()
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{what}: expected a point cloud of shape (N, 2), got {tuple(x.shape)}")
    return x


def _square(ax, lim: float, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set(xlabel=xlabel, ylabel=ylabel)  # on every panel: each is read on its own
    readable_ticks(ax)


def scatter_panels(panels: Mapping[str, Tensor], lim: float = 1.5, s: float = 2.0, alpha: float = 0.4,
                   xlabel: str = "x₁", ylabel: str = "x₂"):
    """One scatter plot per named point cloud, side by side, on shared axes.

    Parameters
    ----------
    panels : {title: Tensor, shape (N, 2)}
    lim : float
        Both axes span [−lim, lim].
    xlabel, ylabel : str
        Axis labels of every panel (the data's coordinates x₁, x₂ by default).
    """
    fig, axes = plt().subplots(1, len(panels), figsize=(2.7 * len(panels), 3.0), squeeze=False,
                               sharex=True, sharey=True)
    for c, (ax, (name, x)) in enumerate(zip(axes[0], panels.items())):
        x = _points(x, f"panel {name!r}")
        ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, lw=0)
        set_title(ax, name)
        _square(ax, lim, xlabel, ylabel)
    fit_titles(fig)
    return fig


def scatter_process(rows: Mapping[str, Process], lim: float = 2.5, s: float = 2.0, alpha: float = 0.4,
                    xlabel: str = "x₁", ylabel: str = "x₂"):
    """Generative processes of 2-D samples (GDM Fig. 1a): one row per model, one column per time.

    Parameters
    ----------
    rows : {model: [(t, Tensor of shape (N, 2)), ...]}
        E.g. from :func:`snapshots`; t from 1 (noise) down to 0 (data).
    xlabel, ylabel : str
        Axis labels of every panel; the first column's y label is preceded by the row's model name.
    """
    n_cols = max(len(p) for p in rows.values())
    fig, axes = plt().subplots(len(rows), n_cols, figsize=(2.2 * n_cols, 2.4 * len(rows)), squeeze=False,
                               sharex=True, sharey=True)
    for r, (name, proc) in enumerate(rows.items()):
        for c, (t, x) in enumerate(proc):
            ax = axes[r, c]
            x = _points(x, f"row {name!r}, t = {t}")
            ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, lw=0)
            set_title(ax, f"t = {t:.2f}")
            _square(ax, lim, xlabel, f"{textwrap.fill(name, 22)}\n{ylabel}" if c == 0 else ylabel)
        for c in range(len(proc), n_cols):
            axes[r, c].axis("off")
    fit_titles(fig)
    return fig


def latent_variation_2d(panels: Mapping[str, Mapping[str, Tensor]], lim: float = 1.5,
                        xlabel: str = "x₁", ylabel: str = "x₂"):
    """GDM Fig. 1c for 2-D data: decoded points as one latent group is varied.

    Parameters
    ----------
    panels : {model: {variation label: Tensor, shape (R, M, 2)}}
        R base latents, M values of the varied group each; each base latent's M outputs are drawn as a
        connected line of markers, one colour per variation.
    xlabel, ylabel : str
        Axis labels of every panel (x₁, x₂ by default).
    """
    fig, axes = plt().subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2), squeeze=False,
                               sharex=True, sharey=True)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for c, (ax, (name, variations)) in enumerate(zip(axes[0], panels.items())):
        for (label, pts), col in zip(variations.items(), colors):
            pts = pts.detach().cpu()
            if pts.ndim != 3 or pts.shape[-1] != 2:
                raise ValueError(f"{name!r} / {label!r}: expected shape (R, M, 2), got {tuple(pts.shape)}")
            for r in range(pts.shape[0]):
                ax.plot(pts[r, :, 0], pts[r, :, 1], "-o", ms=2.5, lw=0.8, color=col, alpha=0.7,
                        label=label if r == 0 else None)
        set_title(ax, name)
        _square(ax, lim, xlabel, ylabel)
    axes[0, 0].legend(fontsize=LEGEND_SIZE, loc="lower left")
    fit_titles(fig)
    return fig
