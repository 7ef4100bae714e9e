"""Charts of numbers: training losses, bar charts, GDM Table 1, Fig. 5a (orders) and Fig. 11 (k, NFE).

The result-set charts take the xarray Datasets the notebooks save (``data/*.nc``): a ``quality``
variable with a ``run`` dimension (mean ± std over runs, ddof = 1, as in the tables), an optional
``floor`` (the data-versus-data floor) and the attrs ``metric``, ``nfe``, ``k``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ._common import LEGEND_SIZE, fit_titles, log_axis, plt, readable_ticks, set_title


def _require(obj, names, what: str) -> None:
    missing = [n for n in names if n not in obj]
    if missing:
        raise ValueError(f"{what}: missing {missing}; have {list(obj)}. "
                         "Pass the result set (or table) the notebook saves")


def _mean_std(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof = 1) over the last axis, ignoring NaN; NaN where no (two) finite values."""
    ok = np.isfinite(a)
    n = ok.sum(-1)
    x = np.where(ok, a, 0.0)
    mean = np.divide(x.sum(-1), n, out=np.full(n.shape, np.nan), where=n > 0)
    sq = np.where(ok, (a - mean[..., None]) ** 2, 0.0).sum(-1)
    std = np.sqrt(np.divide(sq, n - 1, out=np.full(n.shape, np.nan), where=n > 1))
    return mean, std


def _floor(ax, ds) -> None:
    if "floor" in ds:
        ax.axhline(float(np.nanmean(ds["floor"].values)), ls="--", color="k", lw=1, label="data floor")


def _metric(ds) -> str:
    return f"{ds.attrs.get('metric', 'sample quality')} (lower is better)"


def loss_curves(df, hue: str = "model", logy: bool = True):
    """Training losses: a DataFrame with columns ``step``, ``loss`` and ``hue`` (one line per value)."""
    import seaborn as sns

    _require(df.columns, ["step", "loss", hue], "loss_curves")
    fig, ax = plt().subplots(figsize=(5.0, 3.0))
    sns.lineplot(data=df, x="step", y="loss", hue=hue, ax=ax)
    ax.set(xlabel="training step", ylabel="loss (mean per logging window)")
    if logy:
        log_axis(ax, "y")
    ax.legend(fontsize=LEGEND_SIZE, title=hue, title_fontsize=LEGEND_SIZE)
    set_title(ax, "training loss")
    readable_ticks(ax)
    fit_titles(fig)
    return fig


def bar_panel(df, x: str, y: str, hue: str | None = None, logy: bool = False, title: str = "",
              ref: Mapping[str, float] | None = None, xlabel: str | None = None, ylabel: str | None = None):
    """A seaborn bar chart of columns ``x``, ``y`` (and ``hue``) of ``df``, with labelled reference lines.

    ref : {label: value}, optional
        Horizontal reference lines. xlabel, ylabel : axis labels (default: the column names).
    """
    import seaborn as sns

    _require(df.columns, [x, y] + ([hue] if hue else []), "bar_panel")
    fig, ax = plt().subplots(figsize=(6.5, 3.2))
    sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax)
    for (label, v), ls in zip((ref or {}).items(), ["--", ":", "-."]):
        ax.axhline(v, ls=ls, color="k", lw=1, label=label)
    if logy:
        log_axis(ax, "y")
    if ref or hue:
        ax.legend(fontsize=LEGEND_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y)
    set_title(ax, title)
    ax.tick_params(axis="x", labelrotation=20)
    readable_ticks(ax)
    fit_titles(fig)
    return fig


def table1_bars(t1, dataset: str = "", paper_title: str = "paper (CIFAR-10, NFE 128)"):
    """GDM Table 1: sample quality of the k = 2 strategies (ours, mean ± std), next to the paper's FID10K.

    Parameters
    ----------
    t1 : xarray.Dataset
        ``quality`` (strategy, run), optional ``paper_fid10k`` (strategy) and ``floor``; attrs ``metric``,
        ``nfe``, ``k``, ``solver``.
    dataset : str
        Named in the title (e.g. "digits12").
    """
    _require(t1, ["quality"], "table1_bars")
    q = t1["quality"].transpose(..., "run")
    names = [str(s) for s in q[q.dims[0]].values]
    mean, std = _mean_std(q.values)
    pos = np.arange(len(names))
    paper = "paper_fid10k" in t1
    fig, axes = plt().subplots(1, 2 if paper else 1, figsize=(4.4 * (2 if paper else 1), 3.4), squeeze=False)
    ax = axes[0, 0]
    ax.bar(pos, mean, yerr=np.nan_to_num(std), capsize=3, color="tab:blue", label="mean ± std over runs")
    _floor(ax, t1)
    ax.legend(fontsize=LEGEND_SIZE)
    a = t1.attrs
    set_title(ax, f"ours: {dataset + ', ' if dataset else ''}{str(a.get('solver', 'euler')).capitalize()} "
                  f"NFE {a.get('nfe', '?')}, {q.sizes['run']} runs (± std)")
    ax.set_ylabel(_metric(t1))
    if paper:
        ax = axes[0, 1]
        v = t1["paper_fid10k"].sel({q.dims[0]: q[q.dims[0]]}).values
        ax.bar(pos, v, color="tab:gray")
        ax.set_ylim(np.floor(v.min()) - 2, np.ceil(v.max()) + 1)
        ax.set_ylabel("FID10K (lower is better)")
        set_title(ax, paper_title)
    for ax in axes[0]:
        ax.set_xticks(pos, names, rotation=15, ha="right")
        ax.set_xlabel(f"grouping strategy (k = {a.get('k', 2)})")
        readable_ticks(ax)
    fit_titles(fig)
    return fig


def order_quality(orders, title: str | None = None, max_labels: int = 20):
    """GDM Fig. 5a: sample quality of each order of generation, sorted, mean ± std over runs.

    Parameters
    ----------
    orders : xarray.Dataset
        ``quality`` (order, run) with the order's name as coordinate, optional ``floor``; attrs
        ``metric``, ``k``.
    max_labels : int
        Up to this many orders each tick names its order; beyond, ticks give the rank and the best and
        worst orders are annotated.
    """
    from matplotlib.ticker import MaxNLocator

    _require(orders, ["quality"], "order_quality")
    q = orders["quality"].transpose(..., "run")
    names = [str(s) for s in q[q.dims[0]].values]
    mean, std = _mean_std(q.values)
    rank = np.argsort(mean, kind="stable")
    n, runs = len(names), q.sizes["run"]
    pos = np.arange(1, n + 1)
    fig, ax = plt().subplots(figsize=(min(max(4.8, 0.38 * n + 2.5), 10.0), 3.6))
    ax.errorbar(pos, mean[rank], np.nan_to_num(std[rank]), fmt="o", ms=4, capsize=2,
                label=f"mean ± std over {runs} runs")
    _floor(ax, orders)
    if n <= max_labels:
        ax.set_xticks(pos, [names[i] for i in rank], rotation=90 if max(map(len, names)) > 3 else 0)
        ax.set_xlabel("order of generation (blocks, first generated first), sorted by mean")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        ax.set_xlabel("rank of the order (sorted by mean)")
        for r, where, dx, ha in ((0, "best", 6, "left"), (n - 1, "worst", -6, "right")):
            ax.annotate(f"{where}: {names[rank[r]]}", (pos[r], mean[rank[r]]), xytext=(dx, -14), ha=ha,
                        textcoords="offset points", fontsize=LEGEND_SIZE)
    ax.set_ylabel(_metric(orders))
    ax.legend(fontsize=LEGEND_SIZE)
    set_title(ax, title or f"Fig. 5a: {n} block orders (k = {orders.attrs.get('k', '?')}), "
                           f"{runs} runs each (± std)")
    readable_ticks(ax)
    fit_titles(fig)
    return fig


def efficiency_curves(ds, title: str = "Fig. 11: sample quality against NFE for k groups",
                      legend_title: str = "k (groups)"):
    """GDM Fig. 11 / App. A.2: sample quality against NFE, one line per number of groups k (log–log).

    Parameters
    ----------
    ds : xarray.Dataset
        ``quality`` with dims (k, nfe, run), NaN where a setting was skipped (NFE < k); optional
        ``floor``; attr ``metric``.
    """
    _require(ds, ["quality"], "efficiency_curves")
    q = ds["quality"]
    if set(q.dims) != {"k", "nfe", "run"}:
        raise ValueError(f"efficiency_curves: quality must have dims (k, nfe, run), got {q.dims}")
    q = q.transpose("k", "nfe", "run")
    nfe = q["nfe"].values.astype(float)
    mean, std = _mean_std(q.values)
    fig, ax = plt().subplots(figsize=(5.0, 3.4))
    for i, k in enumerate(q["k"].values.tolist()):
        ok = np.isfinite(mean[i])
        ax.errorbar(nfe[ok], mean[i, ok], np.nan_to_num(std[i, ok]), marker="o", ms=4, capsize=2,
                    label=str(k))
    _floor(ax, ds)
    log_axis(ax, "x", at=nfe)
    log_axis(ax, "y")
    ax.set(xlabel="NFE (Euler steps, log scale)", ylabel=_metric(ds))
    ax.legend(fontsize=LEGEND_SIZE, title=legend_title, title_fontsize=LEGEND_SIZE)
    set_title(ax, title)
    readable_ticks(ax)
    fit_titles(fig)
    return fig


def trend_lines(df, x: str, y: str, hue: str, reference: Mapping[str, float] | None = None, *,
                logx: bool = True, logy: bool = True, xlabel: str | None = None, ylabel: str | None = None,
                title: str = ""):
    """A measurement against a budget or a time, one line per ``hue`` value (e.g. ED against training
    steps, the budget trend behind a claim that does not hold yet), with reference levels (the exact
    oracle, the data floor) as dashed horizontal lines.

    ``df``: a DataFrame with columns ``x``, ``y`` and ``hue`` (one row per point).
    """
    _require(df.columns, [x, y, hue], "trend_lines")
    fig, ax = plt().subplots(figsize=(5.0, 3.2))
    for name, part in df.groupby(hue, sort=False):
        part = part.sort_values(x)
        ax.plot(part[x].to_numpy(float), part[y].to_numpy(float), marker="o", ms=4, label=str(name))
    for i, (name, level) in enumerate((reference or {}).items()):
        ax.axhline(float(level), ls="--", lw=1, color=f"C{7 + i % 3}", label=name)
    if logx:
        log_axis(ax, "x", at=sorted(set(df[x].to_numpy(float))))
    if logy:
        log_axis(ax, "y")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y)
    ax.legend(fontsize=LEGEND_SIZE, title=hue, title_fontsize=LEGEND_SIZE)
    set_title(ax, title)
    readable_ticks(ax)
    fit_titles(fig)
    return fig
