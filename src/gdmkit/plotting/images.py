"""Figures of images: sample grids, generative processes, groupings and pixel change maps.

Samples are pictures: drawn as RGB (grey images repeated over three channels), so no colour scale is
involved. Quantities shown as images (group indices, |Δx|) get a colour map AND a colour bar.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from ._common import fit_titles, plt, readable_ticks, set_title

Process = Sequence[tuple[float, Tensor]]
PIXEL_X, PIXEL_Y = "column (px)", "row (px)"


def image_grid(ax, images: Tensor, nrow: int | None = None, pad: int = 1) -> None:
    """Draw images (N, C, H, W) in [-1, 1] as one tiled RGB picture on ``ax`` (C = 1: grey)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    x = (images.detach().cpu().float().clamp(-1, 1) + 1) / 2
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        canvas[:, y0: y0 + h, x0: x0 + w] = x[i]
    ax.imshow(canvas.expand(3, -1, -1).permute(1, 2, 0).numpy())  # (H', W', 3): a picture, no colour map
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def image_panels(panels: Mapping[str, Tensor], nrow: int | None = None, size: float = 2.6):
    """One image grid per named batch, side by side.

    Parameters
    ----------
    panels : {title: Tensor, shape (N, C, H, W) in [-1, 1]}
        Titles are shown verbatim, wrapped at spaces to the panel's width (pass them unedited).
    nrow : int, optional
        Images per row of each grid (default: about √N).
    """
    fig, axes = plt().subplots(1, len(panels), figsize=(size * len(panels), size + 0.5), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels.items()):
        image_grid(ax, x, nrow)
        set_title(ax, name)
    fit_titles(fig)
    return fig


def image_process(rows: Mapping[str, Process], nrow: int | None = None, size: float = 1.6):
    """Generative processes of images (GDM Fig. 2, 5, 13): one row per process, one column per time.

    Parameters
    ----------
    rows : {name: [(t, Tensor of shape (N, C, H, W)), ...]}
        Each cell tiles the batch at time t (e.g. from :func:`gdmkit.plotting.snapshots`).
    """
    n_cols = max(len(p) for p in rows.values())
    fig, axes = plt().subplots(len(rows), n_cols, figsize=(size * n_cols, size * len(rows) + 0.4),
                               squeeze=False)
    for r, (name, proc) in enumerate(rows.items()):
        for c, (t, x) in enumerate(proc):
            image_grid(axes[r, c], x, nrow)
            set_title(axes[r, c], f"t = {t:.2f}", fontsize=9)
        for c in range(len(proc), n_cols):
            axes[r, c].axis("off")
        axes[r, 0].set_ylabel(name, fontsize=9)
    fit_titles(fig)
    return fig


def _index_map(g, name: str) -> Tensor:
    group = g.group if hasattr(g, "group") else g
    group = torch.as_tensor(group).detach().cpu()
    if group.ndim == 3:
        if not bool((group == group[:1]).all()):
            raise ValueError(f"grouping {name!r}: channels are in different groups; show one channel")
        group = group[0]
    if group.ndim != 2 or group.dtype.is_floating_point or int(group.min()) < 0:
        raise ValueError(f"grouping {name!r}: expected integer group indices of shape (H, W) or (C, H, W), "
                         f"got {tuple(group.shape)} {group.dtype}")
    return group


def groupings_panels(groupings: Mapping[str, object], size: float = 2.2, cmap: str = "viridis"):
    """Each grouping's generation order as a pixel map, with a colour bar (1, dark: generated first).

    Parameters
    ----------
    groupings : {name: Grouping or Tensor of group indices, shape (H, W) or (C, H, W)}
        Group 0 is generated first (:class:`gdmkit.groupings.Grouping`).
    """
    import matplotlib as mpl
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt().subplots(1, len(groupings), figsize=((size + 1.2) * len(groupings), size + 0.6),
                               squeeze=False, layout="constrained")
    for ax, (name, g) in zip(axes[0], groupings.items()):
        group = _index_map(g, name)
        k = int(group.max()) + 1
        norm = mpl.colors.BoundaryNorm(torch.arange(k + 1).numpy() + 0.5, mpl.colormaps[cmap].N)
        im = ax.imshow(group.numpy() + 1, cmap=cmap, norm=norm)
        cb = fig.colorbar(im, ax=ax, shrink=0.8, label="generation order")
        cb.ax.yaxis.set_major_locator(MaxNLocator(nbins=min(k, 6), integer=True))
        cb.ax.minorticks_off()
        set_title(ax, f"{name} (k = {k})")
        ax.set(xlabel=PIXEL_X, ylabel=PIXEL_Y)
        ax.grid(False)
        readable_ticks(ax)
        readable_ticks(cb.ax)
    fit_titles(fig)
    return fig


def change_maps(maps, outlines: Tensor | None = None, names: Sequence[str] | None = None, ncols: int = 3,
                title: str = "Fig. 1c: mean |Δx| when one latent group is resampled (cyan: its block)",
                label: str = "mean |Δx| (pixel value, data in [-1, 1])", cmap: str = "magma"):
    """Per-pixel change maps on one shared colour scale, with its colour bar (GDM Fig. 1c).

    Parameters
    ----------
    maps : Tensor, shape (J, H, W), or xarray.DataArray with dims (group, y, x)
        Map j: the mean |x(z with group j resampled) − x(z)| per pixel. A DataArray's first coordinate
        names the panels ("vary group <value>").
    outlines : Tensor, shape (J, H, W), bool, optional
        Region outlined (cyan) on map j, e.g. group j's mask.
    names : sequence of J str, optional
        Panel titles (default: from the DataArray's coordinate, else "vary group 1", ...).
    """
    if hasattr(maps, "dims"):  # xarray.DataArray
        names = names or [f"vary group {v}" for v in maps[maps.dims[0]].values.tolist()]
        maps = torch.as_tensor(maps.values)
    maps = torch.as_tensor(maps).detach().cpu().double()
    if maps.ndim != 3:
        raise ValueError(f"change maps: expected shape (J, H, W), got {tuple(maps.shape)}")
    n = len(maps)
    names = list(names or [f"vary group {j + 1}" for j in range(n)])
    if len(names) != n or (outlines is not None and tuple(outlines.shape) != tuple(maps.shape)):
        raise ValueError(f"change maps: {n} maps of shape {tuple(maps.shape[1:])} need {n} names and "
                         f"outlines of shape {tuple(maps.shape)}; got {len(names)} names, outlines "
                         f"{None if outlines is None else tuple(outlines.shape)}")
    nrows = math.ceil(n / ncols)
    fig, axes = plt().subplots(nrows, ncols, figsize=(1.9 * ncols + 1.0, 1.9 * nrows + 0.6), squeeze=False,
                               sharex=True, sharey=True, layout="constrained")
    import matplotlib as mpl

    norm = mpl.colors.Normalize(0.0, float(maps.max()) if float(maps.max()) > 0 else 1.0)  # one shared scale
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        im = ax.imshow(maps[j].numpy(), cmap=cmap, norm=norm)
        if outlines is not None:
            ax.contour(outlines[j].detach().cpu().float().numpy(), levels=[0.5], colors="cyan", linewidths=1)
        set_title(ax, names[j], fontsize=9)
        ax.grid(False)
        c = j % ncols
        if j + ncols >= n:  # no panel below this one
            ax.set_xlabel(PIXEL_X)
        if c == 0:
            ax.set_ylabel(PIXEL_Y)
        readable_ticks(ax)
    cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, label=label)
    readable_ticks(cb.ax)
    fig.suptitle(title, fontsize=10)
    fit_titles(fig)
    return fig
