"""The meaning of GDM-F latents as numbers, on data with known factors of variation (GDM §4.3–4.4).

The paper shows pictures: interpolating a band (Fig. 3) or traversing one element of the lowest band
(Fig. 6) changes "high-level attributes". On the procedural shapes (:func:`gdmkit.data.shapes`: shape,
position x and y, scale, hue) the attributes are known, so both become measurements:

- :class:`ShapeFactorReader` — factor estimates from images: position, scale and hue from image moments
  (:func:`gdmkit.metrics.estimate_shape_factors`), the hue as an angle, and optionally the shape kind
  from a classifier trained on the shape labels; each factor has a kind (linear, circular, categorical)
  that decides how a change is measured;
- :func:`pair_scale` — the unit of change per factor: the mean change between two unrelated real images;
- :func:`band_sensitivity` — factor × band matrix: how much each factor changes when one band's latents
  are resampled, in that unit (:func:`gdmkit.metrics.factor_sensitivity` measured plain differences of
  unnormalised columns; hue is circular and the shape kind categorical, hence this version);
- :func:`traversal_effects`, :func:`exclusivity`, :func:`exclusivity_score` — for single-element
  traversals: which factor each element moves and how exclusively.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from . import latents, metrics, tensors
from .groupings import Grouping

__all__ = ["ShapeFactorReader", "pair_scale", "band_sensitivity", "band_share", "band_leak",
           "traversal_effects", "exclusivity", "exclusivity_score"]

KINDS = ("linear", "circular", "categorical")


class ShapeFactorReader:
    """Factor estimates of procedural shapes, images (N, 3, H, W) in [-1, 1] -> (N, F).

    Columns: ``x``, ``y`` (centroid, image units), ``scale`` (√(coverage / HW)), ``hue`` (angle in
    radians of the coverage-weighted mean colour, circular) from
    :func:`gdmkit.metrics.estimate_shape_factors`, and ``shape`` (the argmax class of ``classifier``, a
    :class:`gdmkit.features.ClassifierFeatures` trained on the shape labels, categorical) when given.
    """

    def __init__(self, classifier=None):
        self.classifier = classifier
        self.names = ["x", "y", "scale", "hue"] + (["shape"] if classifier is not None else [])
        self.kinds = ["linear", "linear", "linear", "circular"] + (["categorical"] if classifier is not None
                                                                   else [])

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        f = metrics.estimate_shape_factors(images).double()  # (N, 5): cx, cy, size, cos, sin
        cols = [f[:, 0], f[:, 1], f[:, 2], torch.atan2(f[:, 4], f[:, 3])]
        if self.classifier is not None:
            logits = torch.cat([self.classifier.logits(c) for c in images.split(256)])
            cols.append(logits.argmax(1).double())
        return torch.stack(cols, 1)

    def change(self, a: Tensor, b: Tensor) -> Tensor:
        """|change| per factor between estimates a and b (N, F): absolute difference (linear), the
        angle between (circular, in [0, π]), 0 or 1 (categorical)."""
        return _change(a, b, self.kinds)


def _change(a: Tensor, b: Tensor, kinds: Sequence[str]) -> Tensor:
    if a.shape != b.shape or a.shape[-1] != len(kinds):
        raise ValueError(f"factor estimates {tuple(a.shape)} and {tuple(b.shape)} must match and have one "
                         f"column per factor kind ({len(kinds)})")
    d = (a - b).abs()
    cols = []
    for i, kind in enumerate(kinds):
        if kind == "linear":
            cols.append(d[..., i])
        elif kind == "circular":
            cols.append(torch.remainder(d[..., i] + math.pi, 2 * math.pi).sub(math.pi).abs())
        elif kind == "categorical":
            cols.append((d[..., i] > 0).to(d.dtype))
        else:
            raise ValueError(f"unknown factor kind {kind!r}; choose one of {KINDS}")
    return torch.stack(cols, -1)


@torch.no_grad()
def pair_scale(reader: ShapeFactorReader, images: Tensor,
               generator: torch.Generator | None = None) -> Tensor:
    """Mean |change| of each factor between an image and an unrelated one (a random permutation of
    ``images`` (N, 3, H, W)): the unit in which sensitivities are reported (1 = as much change as
    replacing the image by another real one). Returns (F,) float64, all positive."""
    f = reader(images)
    perm = tensors.randperm(len(images), generator)
    s = reader.change(f, f[perm]).mean(0)
    if not bool((s > 0).all()):
        raise ValueError(f"factors {[n for n, v in zip(reader.names, s.tolist()) if v <= 0]} do not vary "
                         "over these images: pass a set of real images whose factors vary")
    return s


@torch.no_grad()
def band_sensitivity(decode: Callable[[Tensor], Tensor], z: Tensor, grouping: Grouping,
                     reader: ShapeFactorReader, scale: Tensor, *, band_names: Sequence[str] | None = None,
                     generator: torch.Generator | None = None):
    """Factor × band sensitivity (quantitative GDM Fig. 3): S[f, j] = mean_n |φ_f(x(z⁽ʲ⁾)) − φ_f(x(z))|_n
    / scale_f, where z⁽ʲ⁾ is z with band j's latents redrawn from N(0, 1) (:func:`latents.resample`).

    Parameters
    ----------
    decode : callable, latents (N, *event_shape) -> images (N, 3, H, W) (a :class:`latents.Codec`)
    z : Tensor, shape (N, *event_shape), the base latents
    grouping : the bands (generation order)
    reader : the factor estimates; scale : (F,) the unit per factor (:func:`pair_scale`)

    Returns
    -------
    xarray.Dataset with ``sensitivity`` and its standard error ``sem`` (factor, band), float64.
    """
    import xarray as xr

    base = reader(decode(z))
    mean, sem = [], []
    for j in range(grouping.k):
        d = reader.change(reader(decode(latents.resample(z, grouping.mask(j), generator))), base)
        d = d / scale.to(d)
        mean.append(d.mean(0))
        sem.append(d.std(0, correction=1) / math.sqrt(len(d)) if len(d) > 1 else torch.zeros_like(d[0]))
    names = list(band_names) if band_names is not None else [str(j) for j in range(grouping.k)]
    dims = ("factor", "band")
    return xr.Dataset({"sensitivity": (dims, torch.stack(mean, 1).numpy()),
                       "sem": (dims, torch.stack(sem, 1).numpy())},
                      coords={"factor": list(reader.names), "band": names},
                      attrs={"statistic": "mean |change of factor| when one band's latents are resampled, "
                                          "in units of the mean change between two unrelated real images",
                             "n_latents": len(z)})


def band_share(sensitivity) -> "object":
    """Each factor's sensitivity as shares over the bands (rows sum to 1): where a factor lives."""
    return sensitivity / sensitivity.sum("band")


def band_leak(ds, factor_names: Sequence[str], band: int = -1) -> tuple[float, float]:
    """Mean over ``factor_names`` of the share of each factor's sensitivity that lies in ``band`` (default
    the highest), and its standard error: sem of that band's sensitivity over the row sum, combined over
    the factors as independent. ``ds``: a :func:`band_sensitivity` result. Returns (mean, sem)."""
    s, e = ds.sensitivity.sel(factor=list(factor_names)), ds.sem.sel(factor=list(factor_names))
    total = s.sum("band")
    share = s.isel(band=band) / total
    sem = e.isel(band=band) / total
    n = len(factor_names)
    return float(share.mean()), float((sem**2).sum() ** 0.5 / n)


@torch.no_grad()
def traversal_effects(decode: Callable[[Tensor], Tensor], z: Tensor, elements: Sequence[tuple],
                      values: Sequence[float], reader: ShapeFactorReader, scale: Tensor):
    """Single-element traversals (GDM Fig. 6) as numbers: for element e and base latent n, the images
    decoded with z_n[e] set to each value (:func:`latents.traverse`) against the image of z_n itself;
    effect[e, f] = mean over bases and values of |φ_f(x_v) − φ_f(x)| / scale_f.

    z : (N, *event_shape) base latents; elements : indices into the event shape; values : e.g. the
    paper's [−3, 3] grid. Returns xarray.DataArray (element, factor), float64.
    """
    import xarray as xr

    base = reader(decode(z))  # (N, F)
    rows = []
    for e in elements:
        zs = torch.cat([latents.traverse(zn, e, values) for zn in z])  # (N·V, *event_shape)
        f = reader(decode(zs)).reshape(len(z), len(values), -1)
        d = reader.change(f, base[:, None].expand_as(f)) / scale.to(f)
        rows.append(d.mean((0, 1)))
    names = ["(" + ", ".join(str(int(i)) for i in e) + ")" for e in elements]
    return xr.DataArray(torch.stack(rows).numpy(), dims=("element", "factor"),
                        coords={"element": names, "factor": list(reader.names)}, name="traversal_effect",
                        attrs={"statistic": "mean |change of factor| along the traversal, in units of the "
                                            "mean change between two unrelated real images",
                               "values": [float(v) for v in values], "n_latents": len(z)})


def exclusivity(effects):
    """Per element: its main factor, the share of its change that lands there (max_f / Σ_f, between 1/F
    for an even spread and 1 for a single factor) and its total change. Returns a pandas DataFrame."""
    import pandas as pd

    e = effects.values
    total = e.sum(1)
    if (total <= 0).any():
        bad = [str(n) for n, t in zip(effects.element.values, total) if t <= 0]
        raise ValueError(f"elements {bad[:5]} move no factor at all: exclusivity is undefined for them")
    main = e.argmax(1)
    return pd.DataFrame({"element": effects.element.values,
                         "main factor": [str(effects.factor.values[i]) for i in main],
                         "share": e.max(1) / total, "total": total})


def exclusivity_score(effects) -> dict:
    """Summary over elements: ``mean`` share and its standard error ``sem`` over elements, ``weighted``
    share (weights = each element's total change, so elements that move little count little), and
    ``chance`` = 1/F."""
    ex = exclusivity(effects)
    w = ex["total"] / ex["total"].sum()
    n = len(ex)
    return {"mean": float(ex["share"].mean()),
            "sem": float(ex["share"].std(ddof=1) / n**0.5) if n > 1 else 0.0,
            "weighted": float((w * ex["share"]).sum()), "chance": 1.0 / effects.sizes["factor"]}
