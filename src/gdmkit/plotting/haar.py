"""Figures of the Haar ⊗ column schedule (GUD §5.3, eq. 22, Fig. 4): when each wavelet level and column
is generated, the printed eq. 22 next to the corrected one, and result maps over the softness (a, b).

Import as ``from gdmkit.plotting import haar as haar_plots``. Inputs are schedules, a Haar basis'
``labels()`` and DataFrames; every colour scale gets a colour bar, every data Axes x and y labels.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ._common import LEGEND_SIZE, fit_titles, plt, readable_ticks, set_title

T_LABEL = "time t (0 data, 1 noise)"


def _channel0(x: Tensor) -> np.ndarray:
    x = torch.as_tensor(x).detach().cpu()
    return (x[0] if x.ndim == 3 else x).double().numpy()


def level_columns(labels: Mapping[str, Tensor]) -> list[tuple[int, int, tuple[int, ...]]]:
    """The distinct (level n, column j) of a Haar basis in generation order — coarsest level first
    (n = 𝒩 … 1, i.e. i = 1 … 𝒩 of GUD App. B), left column first — each with the index of one of its
    components (every component of a (level, column) pair shares one γ_ij(t) in eq. 22)."""
    level, column = torch.as_tensor(labels["level"]), torch.as_tensor(labels["column"])
    out = []
    for n in sorted(torch.unique(level).tolist(), reverse=True):
        for j in sorted(torch.unique(column[level == n]).tolist()):
            idx = torch.nonzero((level == n) & (column == j))[0]
            out.append((int(n), int(j), tuple(int(i) for i in idx)))
    return out


def _outline_subbands(ax, labels: Mapping[str, Tensor]) -> None:
    """White lines on the sub-band boundaries of the Mallat layout (level or band changes)."""
    key = _channel0(labels["level"]) * 4 + _channel0(labels["band"])
    H, W = key.shape
    for r in range(H):
        for c in range(W):
            if c + 1 < W and key[r, c] != key[r, c + 1]:
                ax.plot([c + 0.5, c + 0.5], [r - 0.5, r + 0.5], color="white", lw=1.2)
            if r + 1 < H and key[r, c] != key[r + 1, c]:
                ax.plot([c - 0.5, c + 0.5], [r + 0.5, r + 0.5], color="white", lw=1.2)


def generation_time_maps(maps: Mapping[str, Tensor], labels: Mapping[str, Tensor], size: float = 2.6,
                         title: str = "", cmap: str = "viridis"):
    """Per component, the time t* at which it is generated (its SNR crosses 1), in the Haar basis'
    Mallat layout (coarse LL top-left), one panel per schedule on one colour scale [0, 1].

    The sampler runs from t = 1 to 0, so a large t* (yellow) is generated first. Grey: never noised to
    SNR 1 on [0, 1] (NaN, e.g. the printed eq. 22). White lines: the sub-band boundaries.

    Parameters
    ----------
    maps : {name: Tensor, shape (C, H, W) or (H, W)}
        t* per component (:func:`gdmkit.schedules.generation_times`); channel 0 is shown.
    labels : dict
        The Haar basis' ``labels()`` ("level", "band").
    """
    import matplotlib as mpl

    fig, axes = plt().subplots(1, len(maps), figsize=((size + 0.3) * len(maps) + 1.0, size + 0.9),
                               squeeze=False, layout="constrained", sharex=True, sharey=True)
    cm = mpl.colormaps[cmap].with_extremes(bad="0.6")
    norm = mpl.colors.Normalize(0.0, 1.0)
    for k, (ax, (name, t)) in enumerate(zip(axes[0], maps.items())):
        im = ax.imshow(np.ma.masked_invalid(_channel0(t)), cmap=cm, norm=norm)
        _outline_subbands(ax, labels)
        set_title(ax, name)
        H, W = _channel0(t).shape
        ax.set_xticks(range(0, W, max(1, W // 4)))
        ax.set_yticks(range(0, H, max(1, H // 4)))
        ax.set(xlabel="coefficient column")
        if k == 0:
            ax.set_ylabel("coefficient row")
        ax.grid(False)
        readable_ticks(ax)
    cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.85,
                      label="t* (SNR = 1); generated first = large t*")
    readable_ticks(cb.ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fit_titles(fig, layout=False)
    return fig


def _gamma_rows(schedule, labels, ts: Tensor) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """γ_ij(t) per (level, column) in generation order: (rows, T) and the (n, j) keys."""
    keys = level_columns(labels)
    with torch.no_grad():
        g = schedule.gamma(ts.to(torch.float64))[0].double()
    rows = np.stack([g[(slice(None), *idx)].cpu().numpy() for _, _, idx in keys])
    return rows, [(n, j) for n, j, _ in keys]


def gamma_timelines(panels: Mapping[str, object], labels: Mapping[str, Tensor], n_t: int = 201,
                    size: float = 2.8, title: str = "", cmap: str = "RdBu_r"):
    """γ_ij(t) of eq. 22 for every (level, column), one panel per schedule: rows in generation order
    (coarsest level i = 1 at the top, its left column first), time on the x axis, one colour scale
    centred on γ = 0 (SNR = 1 under the variance-matching prior). Black lines separate the levels.

    Parameters
    ----------
    panels : {name: GammaSchedule}
        Schedules on a Haar basis' event shape (e.g. HaarColumnGamma for several (a, b)).
    labels : dict
        The Haar basis' ``labels()``.
    """
    import matplotlib as mpl

    ts = torch.linspace(0.0, 1.0, n_t, dtype=torch.float64)
    fig, axes = plt().subplots(1, len(panels), figsize=(size * len(panels) + 1.2, size + 0.6),
                               squeeze=False, layout="constrained", sharey=True)
    data = {name: _gamma_rows(s, labels, ts) for name, s in panels.items()}
    lim = max(float(np.abs(rows).max()) for rows, _ in data.values())
    norm = mpl.colors.TwoSlopeNorm(0.0, -lim, lim)
    for k, (ax, (name, (rows, keys))) in enumerate(zip(axes[0], data.items())):
        im = ax.imshow(rows, aspect="auto", cmap=cmap, norm=norm, extent=(0, 1, len(keys) - 0.5, -0.5))
        levels = [n for n, _ in keys]
        starts = [r for r in range(len(keys)) if r == 0 or levels[r] != levels[r - 1]]
        for r in starts[1:]:
            ax.axhline(r - 0.5, color="black", lw=1)
        n_max = max(levels)
        ax.set_yticks(starts, [f"level i={n_max + 1 - levels[r]}" for r in starts])
        ax.set(xlabel=T_LABEL)
        if k == 0:
            ax.set_ylabel("(level, column): generation order ↓")
        set_title(ax, name)
        ax.grid(False)
        readable_ticks(ax)
    cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.85, label="noising state γ_ij(t)")
    readable_ticks(cb.ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fit_titles(fig, layout=False)
    return fig


def printed_vs_corrected(schedules: Mapping[str, object], labels: Mapping[str, Tensor], n_t: int = 401,
                         size: float = 3.2, title: str = ""):
    """γ_ij(t) of the first and last column of every level, one panel per schedule (e.g. the printed
    eq. 22 and the corrected one at the same (a, b)): colour = level, solid = first (left) column,
    dashed = last column. The printed formula's flat lines at γ_min are levels it never noises."""
    ts = torch.linspace(0.0, 1.0, n_t, dtype=torch.float64)
    fig, axes = plt().subplots(1, len(schedules), figsize=(size * len(schedules) + 0.6, size),
                               squeeze=False, sharey=True)
    for k, (ax, (name, s)) in enumerate(zip(axes[0], schedules.items())):
        rows, keys = _gamma_rows(s, labels, ts)
        n_max = max(n for n, _ in keys)
        for n in sorted({n for n, _ in keys}, reverse=True):
            cols = [r for r, (m, _) in enumerate(keys) if m == n]
            for r, ls in ((cols[0], "-"), (cols[-1], "--")):
                ax.plot(ts.numpy(), rows[r], ls=ls, color=f"C{n_max - n}", lw=1.5,
                        label=f"level i={n_max + 1 - n}, column {'first' if ls == '-' else 'last'}")
        ax.set(xlabel=T_LABEL)
        if k == 0:
            ax.set_ylabel("noising state γ_ij(t)")
        set_title(ax, name)
        readable_ticks(ax)
    axes[0, -1].legend(fontsize=LEGEND_SIZE - 1, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fit_titles(fig)
    return fig


def softness_map(df, value: str, *, extra: Mapping[str, tuple[float, float, float]] | None = None,
                 a_cascade: float | None = None, b_cascade: Sequence[tuple[str, float]] = (),
                 label: str | None = None, title: str = "", cmap: str = "viridis_r", fmt: str = "{:.3f}"):
    """A result over the softness plane (a, b) ∈ [0, 1]²: the evaluated grid as squares coloured by
    ``value`` (annotated), extra points (e.g. standard diffusion at a = b = 0) as stars on the same
    colour scale, the region a ≥ ``a_cascade`` (levels hard-cascaded) shaded, and dotted lines at the
    b above which a level's columns are cascaded.

    Parameters
    ----------
    df : DataFrame with columns "a", "b" and ``value``
    extra : {name: (a, b, value)}, optional
    b_cascade : [(name, b)], e.g. [("level 1 columns", 0.5)]
    """
    import matplotlib as mpl

    missing = [c for c in ("a", "b", value) if c not in df.columns]
    if missing:
        raise ValueError(f"softness_map: df lacks the columns {missing}")
    extra = dict(extra or {})
    vals = np.concatenate([df[value].to_numpy(float), np.array([v for *_, v in extra.values()], float)])
    norm = mpl.colors.Normalize(float(np.nanmin(vals)), float(np.nanmax(vals)))
    fig, ax = plt().subplots(figsize=(5.2, 5.0), layout="constrained")
    if a_cascade is not None:
        ax.axvspan(a_cascade, 1.0, color="0.85", zorder=0, label=f"a ≥ {a_cascade:.3g}: levels cascaded")
    for k, (name, b) in enumerate(b_cascade):
        ax.axhline(b, color="0.4", ls=":", lw=1, zorder=1, label=f"b ≥ {b:.3g}: {name} cascaded")
    sc = ax.scatter(df["a"], df["b"], c=df[value], cmap=cmap, norm=norm, marker="s", s=520,
                    edgecolors="black", zorder=3)
    for a, b, v in zip(df["a"], df["b"], df[value]):
        rgba = sc.cmap(norm(v))
        ax.annotate(fmt.format(v), (a, b), ha="center", va="center", fontsize=7, zorder=4,
                    color="white" if sum(rgba[:3]) < 1.5 else "black")
    for name, (a, b, v) in extra.items():
        ax.scatter([a], [b], c=[v], cmap=cmap, norm=norm, marker="*", s=420, edgecolors="black", zorder=3)
        ax.annotate(f"{name}: {fmt.format(v)}", (a, b), xytext=(8, 8), textcoords="offset points",
                    fontsize=LEGEND_SIZE, zorder=4)
    ax.set(xlim=(-0.05, 1.0), ylim=(-0.05, 1.0), xlabel="a (inverse softness between levels)",
           ylabel="b (inverse softness between columns)")
    cb = fig.colorbar(sc, ax=ax, label=label or value)
    if a_cascade is not None or b_cascade:
        ax.legend(fontsize=LEGEND_SIZE - 1, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    set_title(ax, title)
    readable_ticks(ax)
    readable_ticks(cb.ax)
    fit_titles(fig, layout=False)
    return fig
