"""Figures of GUD §5.1: noising curves (Fig. 2), NLL and quality against the softness (Fig. 3), NLL over the
(r, a) ordering family (Fig. 5). Import as ``from gdmkit.plotting import gud as gud_plots``."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._common import LEGEND_SIZE, fit_titles, plt, readable_ticks, set_title

__all__ = ["noising_curves", "softness_panels", "ordering_maps"]

_ROWS = {"sigma": "σ_i(t)", "gamma": "γ_i(t)", "log_snr": "log SNR_i(t)"}


def noising_curves(curves: Mapping[str, Mapping[str, object]], t, components: Sequence[int],
                   levels: Mapping[str, float] | None = None, size: float = 2.4):
    """GUD Fig. 2: one column per setting, rows σ_i(t), γ_i(t), log SNR_i(t) for the chosen components.

    ``curves[setting][row]``: array (T, d) over the flattened components (rows "sigma", "gamma",
    "log_snr", :func:`gdmkit.gud.noising_curves`); ``t`` (T,); ``components``: indices into d, coloured
    from dark (first) to light. ``levels``: dashed horizontal lines on the log SNR row, e.g.
    {"−γ̃_denoise": 3, "−γ̃_noise": −3}.
    """
    if not curves:
        raise ValueError("noising_curves needs at least one setting")
    t = np.asarray(t, dtype=float)
    fig, axes = plt().subplots(3, len(curves), figsize=(size * len(curves), 2.1 * 3), sharex=True,
                               squeeze=False)
    colours = plt().get_cmap("viridis")(np.linspace(0.0, 0.9, len(components)))
    for j, (name, c) in enumerate(curves.items()):
        for i, (row, label) in enumerate(_ROWS.items()):
            ax = axes[i, j]
            y = np.asarray(c[row], dtype=float).reshape(len(t), -1)
            for col, k in zip(colours, components):
                ax.plot(t, y[:, k], color=col, lw=1.2, label=f"i = {k + 1}")
            if row == "log_snr":
                for lname, v in (levels or {}).items():
                    ax.axhline(v, ls="--", lw=0.9, color="tab:blue")
                    ax.text(0.98, v, lname, ha="right", va="bottom", fontsize=LEGEND_SIZE, color="tab:blue",
                            transform=ax.get_yaxis_transform())
            if j == 0:
                ax.set_ylabel(label)
            if i == 2:
                ax.set_xlabel("t")
            readable_ticks(ax)
        set_title(axes[0, j], name)
    axes[0, -1].legend(fontsize=LEGEND_SIZE, title="PCA component", title_fontsize=LEGEND_SIZE)
    fit_titles(fig)
    return fig


def softness_panels(df, quality_name: str, nll_name: str = "NLL (bits/dim)", title: str = ""):
    """GUD Fig. 3: NLL (left) and sample quality (right) against the softness parameter a, one line per
    prior, log scales; the exact oracle's NLL (Gaussian NLL plus the endpoint part) dashed; a = 1 dotted.

    ``df``: DataFrame with columns "a", "prior", "nll", "nll_oracle", "quality" and optionally
    "nll_std", "quality_std" (error bars).
    """
    for col in ("a", "prior", "nll", "nll_oracle", "quality"):
        if col not in df.columns:
            raise ValueError(f"softness_panels needs a column {col!r}; got {list(df.columns)}")
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(9.0, 3.4))
    for i, (prior, part) in enumerate(df.groupby("prior", sort=False)):
        part = part.sort_values("a")
        a = part["a"].to_numpy(float)
        ax1.errorbar(a, part["nll"], yerr=part.get("nll_std"), marker="o", ms=4, color=f"C{i}",
                     label=f"{prior}: trained", capsize=2)
        ax1.plot(a, part["nll_oracle"], ls="--", color=f"C{i}", label=f"{prior}: exact oracle")
        ax2.errorbar(a, part["quality"], yerr=part.get("quality_std"), marker="o", ms=4, color=f"C{i}",
                     label=str(prior), capsize=2)
    for ax, ylab in ((ax1, nll_name), (ax2, quality_name)):
        ax.set_yscale("log")  # trained NLLs and Fréchet distances span decades at large a
        ax.axvline(1.0, ls=":", color="0.4", lw=1)
        ax.set(xlabel="softness parameter a (a = 1: standard diffusion, unwhitened)", ylabel=ylab)
        ax.legend(fontsize=LEGEND_SIZE)
        readable_ticks(ax)
    set_title(ax1, title or "NLL against a")
    set_title(ax2, "sample quality against a (lower is better)")
    fit_titles(fig)
    return fig


def ordering_maps(maps: Mapping[str, object], standard: tuple[float, float] = (0.0, 1.0),
                  label: str = "NLL (bits/dim)", size: float = 3.2):
    """GUD Fig. 5: one heat map per model of a quantity over the (r, a) grid, a shared colour scale, and a
    black dot at standard diffusion (``standard`` = (r, a)).

    ``maps[name]``: an xarray DataArray with dims ("r", "a").
    """
    if not maps:
        raise ValueError("ordering_maps needs at least one map")
    vals = np.concatenate([np.asarray(m.values, dtype=float).ravel() for m in maps.values()])
    vmin, vmax = float(np.nanmin(vals)), float(np.nanmax(vals))
    fig, axes = plt().subplots(1, len(maps), figsize=(size * len(maps) + 1.2, size), squeeze=False,
                               sharey=True)
    for k, (ax, (name, m)) in enumerate(zip(axes[0], maps.items())):
        m = m.transpose("r", "a")
        r, a = np.asarray(m["r"], float), np.asarray(m["a"], float)
        im = ax.pcolormesh(_edges(a), _edges(r), np.asarray(m.values, float), vmin=vmin, vmax=vmax,
                           cmap="viridis", shading="flat")
        mid = 0.5 * (vmin + vmax)
        dr = 0.25 * (r[1] - r[0]) if len(r) > 1 else 0.25
        for i, ri in enumerate(r):
            for j, aj in enumerate(a):
                v = float(m.values[i, j])
                ax.text(aj, ri - dr, f"{v:.3f}", ha="center", va="center", fontsize=7,
                        color="k" if v > mid else "w")
        ax.plot([standard[1]], [standard[0]], "o", color="k", ms=8, mfc="none", mew=2)
        ax.set(xlabel="softness parameter a")
        if k == 0:
            ax.set_ylabel("ordering r (0: −log Σ, 1: |k|)")
        set_title(ax, name)
        readable_ticks(ax)
    fig.subplots_adjust(top=0.8, bottom=0.17, left=0.08, right=0.86, wspace=0.08)
    fig.colorbar(im, ax=list(axes[0]), label=label, fraction=0.04, pad=0.02)
    fit_titles(fig, layout=False)
    return fig


def _edges(c: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres c (n,) -> (n + 1,)."""
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
