"""Sample-quality and representation metrics.

Distances for low-dimensional samples (energy distance, sliced Wasserstein), the Fréchet distance
in some feature space (Inception when its weights are on disk, else a classifier trained on the same
dataset, always labelled; the extractors are in :mod:`gdmkit.features`), perceptual variance (GDM §4.2),
the factor-by-group sensitivity matrix (the quantitative version of GDM Figs. 3 and 6) with the moment
estimator of the procedural shapes' factors, and group locality (GDM Fig. 1c).
Nothing here downloads weights: missing weights raise WeightsNotFoundError saying where to put them.
"""
from __future__ import annotations

import math
import os
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from . import tensors
from .features import (FeatureExtractor, WeightsNotFoundError, extract, fid_update, inception_features,
                       inception_fid)

__all__ = [
    "Metric", "energy_distance", "sliced_wasserstein", "frechet_distance", "frechet_distance_to", "feature_stats",
    "frechet_feature_distance", "sample_quality", "SampleQuality", "separable", "perceptual_variance",
    "factor_sensitivity", "estimate_shape_factors", "Locality", "group_locality", "order_locality",
    "denoiser_jacobian", "group_jacobian", "velocity_error",
]


class Metric(NamedTuple):
    """A value with the label that must travel with it into every table and figure."""

    name: str
    value: float


# --------------------------------------------------------------------------- low-dimensional samples
def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).double()


def energy_distance(x: Tensor, y: Tensor, *, unbiased: bool = False) -> float:
    """Squared energy distance D² = 2 E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (Székely) between samples
    x (N, d) and y (M, d).

    Default: the V-statistic (all pairs, i = j included), which is exactly D² between the two
    empirical measures and is >= 0. ``unbiased=True``: the U-statistic (i ≠ j in the within-set
    terms), unbiased for the population D² but possibly negative.
    """
    x, y = _flat(x), _flat(y)
    n, m = len(x), len(y)
    dist = lambda a, b: torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")  # noqa: E731 (exact)
    xy, sxx, syy = dist(x, y).mean(), dist(x, x).sum(), dist(y, y).sum()
    if unbiased:
        if n < 2 or m < 2:
            raise ValueError("the unbiased energy distance needs at least 2 samples in each set")
        return float(2 * xy - sxx / (n * (n - 1)) - syy / (m * (m - 1)))
    return float(2 * xy - sxx / n**2 - syy / m**2)


def _w2_sorted(a: Tensor, b: Tensor) -> Tensor:
    """Exact squared W2 between 1-D empirical measures, rows sorted: a (P, n), b (P, m) -> (P,).
    Both quantile functions are step functions; integrate over the union of their breakpoints."""
    n, m = a.shape[1], b.shape[1]
    u = torch.unique(torch.cat([torch.arange(n + 1, dtype=torch.float64, device=a.device) / n,
                                torch.arange(m + 1, dtype=torch.float64, device=a.device) / m]))
    mid, w = (u[1:] + u[:-1]) / 2, u[1:] - u[:-1]
    ia, ib = (mid * n).long().clamp(max=n - 1), (mid * m).long().clamp(max=m - 1)
    return ((a[:, ia] - b[:, ib]) ** 2 * w).sum(1)


def sliced_wasserstein(x: Tensor, y: Tensor, n_proj: int = 128, *,
                       generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance (E_θ W2²(θᵀX, θᵀY))^½ between x (N, d) and y (M, d).

    θ uniform on the sphere (``n_proj`` draws from ``generator``); each 1-D W2 is exact for the
    empirical measures (any N, M). For d = 1 this is exactly W2 of the two samples.
    """
    x, y = _flat(x), _flat(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dimension {x.shape[1]} but y has {y.shape[1]}; compare samples of one space")
    d = x.shape[1]
    if d == 1:
        theta = torch.ones(1, 1, dtype=torch.float64, device=x.device)
    else:
        theta = tensors.randn((n_proj, d), generator, device=x.device, dtype=torch.float64)
        theta = theta / theta.norm(dim=1, keepdim=True)
    a, b = (theta @ x.T).sort(1).values, (theta @ y.T).sort(1).values  # (P, N), (P, M)
    return float(_w2_sorted(a, b).mean().sqrt())


# --------------------------------------------------------------------------- Fréchet distance
def _sqrtm_psd(c: Tensor) -> Tensor:
    e, v = torch.linalg.eigh(c)
    return (v * e.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½): W2² between two Gaussians (the FID formula).

    Eigen-based and stable: the inner matrix is symmetric PSD, so its square-root trace is
    Σ sqrt(max(λ, 0)) over its eigenvalues (float64).
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrtm_psd(cov1)
    m = s1 @ cov2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * tr_sqrt)


def frechet_distance_to(f: Tensor, mu: Tensor, cov: Tensor) -> float:
    """``frechet_distance(*feature_stats(f), mu, cov)`` for samples f (N, F), in the samples' span when N ≤ F.

    With A = H f/√(N − 1) ((N − 1) × F; H the Helmert contrasts, orthonormal rows orthogonal to 1) the
    samples' covariance is Σ₁ = AᵀA, and the nonzero eigenvalues of Σ₁^½ Σ₂ Σ₁^½ are those of A Σ₂ Aᵀ (XY
    and YX have the same nonzero eigenvalues): an (N − 1) × (N − 1) eigenproblem instead of an F × F one,
    O(N F² + N³) instead of O(F³) — the same distance, e.g. for the FID of a few hundred samples at
    F = 2048 or a Fréchet distance to a d = 3072 Gaussian. Float64.
    """
    f = f.reshape(f.shape[0], -1).double()
    n, dim = f.shape
    if n < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 samples to estimate a covariance, got {n}")
    mu, cov = mu.double().to(f.device), cov.double().to(f.device)
    if tuple(mu.shape) != (dim,) or tuple(cov.shape) != (dim, dim):
        raise ValueError(f"samples have {dim} features but mu {tuple(mu.shape)} and cov {tuple(cov.shape)}")
    if n > dim:
        return frechet_distance(*feature_stats(f), mu, cov)
    m1 = f.mean(0)
    # A = H f / √(N − 1) with H (N − 1, N) the Helmert contrasts: orthonormal rows ⟂ 1, so HᵀH = I − 11ᵀ/N
    # and AᵀA is Σ₁ exactly. The centred (f − f̄) has the same Σ₁ but N rows of rank N − 1: A Σ₂ Aᵀ then has
    # an eigenvalue that is 0 in exact arithmetic and ±1e-15 in floating point, whose square root (3e-8
    # when positive) went into the distance, at a size and sign that differed between CPUs
    k = torch.arange(1, n, dtype=torch.float64, device=f.device)[:, None]  # (N − 1, 1)
    j = torch.arange(n, device=f.device)[None, :]  # (1, N)
    H = (torch.where(j < k, 1.0, 0.0) - k * (j == k)) / torch.sqrt(k * (k + 1))  # (N − 1, N)
    a = H @ f / math.sqrt(n - 1)
    inner = a @ cov @ a.T
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    return float(((m1 - mu) ** 2).sum() + a.square().sum() + cov.trace() - 2 * tr_sqrt)


def feature_stats(f: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features f (N, F)."""
    f = f.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


# --------------------------------------------------------------------------- labelled metrics
def frechet_feature_distance(real: Tensor, fake: Tensor, features: FeatureExtractor) -> Metric:
    """Fréchet distance of Gaussian fits to features of real and fake images, as
    Metric("FD_<features.name>", value), e.g. "FD_classifier[digits]"."""
    return Metric(f"FD_{features.name}",
                  frechet_distance_to(extract(features, fake), *feature_stats(extract(features, real))))


def sample_quality(real: Tensor, fake: Tensor, *, features: FeatureExtractor | None = None,
                   inception_weights: str | os.PathLike | None = None) -> Metric:
    """FID when the Inception weights are on disk, else the Fréchet distance in ``features``
    (labelled "FD_<name>"). Raises ValueError when neither is available. For many fake sets against
    one reference, build a :class:`SampleQuality` once instead."""
    return SampleQuality(real, features=features, inception_weights=inception_weights)(fake)


class SampleQuality:
    """Sample quality against a fixed reference set whose statistics are computed once.

    FID (Inception) when the weights are on disk (``inception_weights``, $GDMKIT_INCEPTION_WEIGHTS
    or the torch hub cache) and ``use_inception``, otherwise the Fréchet distance in ``features``,
    labelled "FD_<name>".
    ``quality(fake) -> Metric``; ``quality.name`` says which it is. Use it when many sample sets are
    scored against one reference (GDM Fig. 5's orders × runs).
    """

    def __init__(self, real: Tensor, *, features: FeatureExtractor | None = None,
                 inception_weights: str | os.PathLike | None = None, use_inception: bool = True,
                 batch_size: int = 64):
        self.batch_size = batch_size
        try:
            if not use_inception:
                raise WeightsNotFoundError("Inception not requested (use_inception=False)")
            fid = inception_fid(inception_weights)
        except WeightsNotFoundError as e:
            if features is None:
                raise ValueError(f"no Inception weights ({e}) and no features given: pass features="
                                 "gdmkit.features.train_classifier(images, labels, dataset=...)") from e
            self.name, self.features = f"FD_{features.name}", features
            self.ref = feature_stats(extract(features, real))
            return
        self.name, self.features, self.fid = "FID", None, fid
        fid_update(fid, real, True, batch_size)
        n = fid.real_features_num_samples
        mean = fid.real_features_sum.double() / n  # the reference statistics torchmetrics' compute() uses
        self.ref = (mean, (fid.real_features_cov_sum.double() - n * torch.outer(mean, mean)) / (n - 1))

    def __call__(self, fake: Tensor) -> Metric:
        """The distance of ``fake`` (N ≥ 2 images) to the reference, via :func:`frechet_distance_to`."""
        if self.features is not None:
            return Metric(self.name, frechet_distance_to(extract(self.features, fake), *self.ref))
        return Metric("FID", frechet_distance_to(inception_features(self.fid, fake, self.batch_size), *self.ref))


def separable(a: tuple[float, float], b: tuple[float, float], k: float = 1.0) -> bool:
    """Whether two (mean, std) results are told apart: their ±k·std error bars do not overlap."""
    return abs(a[0] - b[0]) > k * (a[1] + b[1])


def perceptual_variance(images: Tensor, features: FeatureExtractor) -> Metric:
    """E‖φ(x) − E φ(x)‖² over images (N, C, H, W) (GDM §4.2), expectations as sample means;
    Metric("PV_<features.name>", value)."""
    f = extract(features, images)
    return Metric(f"PV_{features.name}", float(((f - f.mean(0)) ** 2).sum(1).mean()))


# --------------------------------------------------------------------------- representation metrics
def _resample(z: Tensor, mask: Tensor, how, generator) -> Tensor:
    if callable(how):
        new = how(z, mask, generator)
    elif how == "normal":
        new = tensors.randn(z.shape, generator, device=z.device, dtype=z.dtype)
    elif how == "permute":
        new = z[torch.randperm(z.shape[0], generator=generator)]
    else:
        raise ValueError(f"resample must be 'normal', 'permute' or a callable, got {how!r}")
    return torch.where(mask, new, z)


@torch.no_grad()
def factor_sensitivity(decode: Callable[[Tensor], Tensor], latents: Tensor, groups: Tensor,
                       factor_fn: Callable[[Tensor], Tensor], *, resample="normal",
                       factor_names: list[str] | None = None,
                       generator: torch.Generator | None = None):
    """Factor-by-group sensitivity: S[f, g] = mean_n |φ_f(decode(z⁽ᵍ⁾))_n − φ_f(decode(z))_n|, where
    z⁽ᵍ⁾ is z with the components of group g resampled (quantitative GDM Figs. 3 and 6).

    latents : (N, *latent_shape); groups : int tensor latent_shape labelling each component;
    factor_fn : images -> (N, F) factor estimates; resample : "normal" (fresh N(0, 1), the prior
    of noise latents), "permute" (the group's coefficients of another example, i.e. the empirical
    marginal) or callable(z, mask, generator) -> z'. Returns xarray.DataArray dims ("factor", "group").
    """
    import xarray as xr

    if groups.shape != latents.shape[1:]:
        raise ValueError(f"groups has shape {tuple(groups.shape)}; it must label each latent component, "
                         f"shape {tuple(latents.shape[1:])}")
    base = factor_fn(decode(latents)).double()  # (N, F)
    ids = torch.unique(groups)
    cols = [(factor_fn(decode(_resample(latents, groups == g, resample, generator))).double() - base)
            .abs().mean(0) for g in ids]
    names = factor_names or [f"f{j}" for j in range(base.shape[1])]
    if len(names) != base.shape[1]:
        raise ValueError(f"{len(names)} factor_names for {base.shape[1]} factors; give one name per column")
    return xr.DataArray(torch.stack(cols, 1).numpy(), dims=("factor", "group"),
                        coords={"factor": list(names), "group": ids.numpy()},
                        name="factor_sensitivity",
                        attrs={"statistic": "mean |change of factor| when one group is resampled",
                               "resample": resample if isinstance(resample, str) else "custom"})


def estimate_shape_factors(images: Tensor) -> Tensor:
    """Factor estimates of procedural shapes (:func:`gdmkit.data.shapes`) from image moments, for use as
    ``factor_fn`` in :func:`factor_sensitivity`.

    images : (N, 3, H, W) in [-1, 1] on a black (-1) background. With coverage α = max_c (x + 1)/2 and
    mass m = Σ α: returns (N, 5): centroid x = Σ α u / m, centroid y (image units), size = √(m / HW),
    cos 2πh, sin 2πh, where h is the HSV hue of the α-weighted mean colour (a point on the circle, so
    plain differences are meaningful).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"estimate_shape_factors expects RGB images (N, 3, H, W), got shape "
                         f"{tuple(images.shape)}; pass the output of gdmkit.data.shapes")
    alpha = ((images + 1) / 2).amax(1).clamp(min=0)  # (N, H, W)
    N, H, W = alpha.shape
    mass = alpha.sum((1, 2)).clamp(min=1e-8)
    u = (torch.arange(W, device=images.device) + 0.5) / W
    v = (torch.arange(H, device=images.device) + 0.5) / H
    cx = (alpha * u).sum((1, 2)) / mass
    cy = (alpha * v[:, None]).sum((1, 2)) / mass
    rgb = ((images + 1) / 2 * alpha[:, None]).sum((2, 3)) / mass[:, None]  # (N, 3)
    r, g, b = rgb.unbind(1)
    mx, mn = rgb.amax(1), rgb.amin(1)
    c = (mx - mn).clamp(min=1e-8)
    h6 = torch.where(mx == r, ((g - b) / c) % 6, torch.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    ang = 2 * math.pi * h6 / 6  # HSV hue (the inverse of the renderer's hue -> RGB) as an angle
    return torch.stack([cx, cy, torch.sqrt(mass / (H * W)), ang.cos(), ang.sin()], 1)


class Locality(NamedTuple):
    """Mean |Δ| inside and outside a mask (GDM Fig. 1c)."""

    inside: float
    outside: float

    @property
    def ratio(self) -> float:
        """outside / inside: 0 for a perfectly local change."""
        return self.outside / self.inside if self.inside > 0 else float("nan")


def group_locality(x_ref: Tensor, x_pert: Tensor, mask: Tensor) -> Locality:
    """Mean |x_pert − x_ref| over elements inside ``mask`` vs outside it.

    x_ref, x_pert : (N, C, H, W) (any matching shapes); mask : bool, broadcastable to them
    (e.g. (H, W) for the pixels of one group).
    """
    if x_ref.shape != x_pert.shape:
        raise ValueError(f"x_ref {tuple(x_ref.shape)} and x_pert {tuple(x_pert.shape)} differ in shape")
    m = torch.broadcast_to(mask.bool(), x_ref.shape)
    if m.all() or not m.any():
        raise ValueError("mask must select some but not all elements; pass the perturbed group's region")
    d = (x_pert - x_ref).abs().double()
    return Locality(float(d[m].mean()), float(d[~m].mean()))


def order_locality(decode: Callable[[Tensor], Tensor], z_base: Tensor, z_new: Tensor, grouping,
                   batch_size: int | None = None) -> list[dict]:
    """GDM Fig. 1c and the consequence of Prop. 3.3, for every group of a grouping.

    For each group j (generation order, 0 first) the latent of group j is resampled (``z_new`` on its
    elements, ``z_base`` elsewhere) and decoded; the mean |Δx| against ``decode(z_base)`` is taken inside
    group j, over the groups generated before j (Prop. 3.3: the optimal denoiser ignores a group that is
    still pure noise, so with the exact denoiser they do not move at all), after j, and outside j.

    decode : latents (M, *event_shape) -> samples (M, *event_shape), deterministic (an ODE sampler), each
        example decoded on its own (no example may depend on another in the batch);
    z_base, z_new : (N, *event_shape); grouping : a :class:`~gdmkit.groupings.Grouping` over event_shape.
    batch_size : int, optional
        Latents per ``decode`` call. The k + 1 sets (the base and one per varied group) are decoded together,
        N·(k + 1) latents in calls of ``batch_size`` (None: one call), not k + 1 calls of N: a sampler
        then steps once per time for all of them (with an exact oracle, one factorisation and one solve
        per time instead of k + 1).
    Returns one row per group: ``{"varied group": j + 1, "inside", "before", "after", "outside",
    "outside / inside", "before / inside", "after / inside"}``, NaN where a region is empty (before for
    the first group, after for the last).
    """
    if z_base.shape != z_new.shape or tuple(z_base.shape[1:]) != tuple(grouping.event_shape):
        raise ValueError(f"z_base {tuple(z_base.shape)} and z_new {tuple(z_new.shape)} must both be "
                         f"(N, *{tuple(grouping.event_shape)}), the grouping's event shape")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer (latents per decode call) or None, got {batch_size!r}")
    n, n_groups = z_base.shape[0], grouping.k
    z_all = torch.cat([z_base, *(torch.where(grouping.mask(j).to(z_base.device), z_new, z_base)
                                 for j in range(n_groups))])
    x_all = torch.cat([decode(z) for z in z_all.split(batch_size or len(z_all))])
    if x_all.shape[0] != z_all.shape[0]:
        raise ValueError(f"decode returned {x_all.shape[0]} samples for {z_all.shape[0]} latents; it must return one "
                         "sample per latent")
    x_base = x_all[:n]
    g = grouping.group.to(x_base.device)
    rows = []
    for j in range(n_groups):
        d = (x_all[n * (j + 1):n * (j + 2)] - x_base).abs().double()
        regions = {"inside": g == j, "before": g < j, "after": g > j, "outside": g != j}
        row = {"varied group": j + 1}
        row.update({k: float(d[:, m].mean()) if m.any() else float("nan") for k, m in regions.items()})
        row.update({f"{k} / inside": row[k] / row["inside"] if row["inside"] > 0 else float("nan")
                    for k in ("outside", "before", "after")})
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- denoisers against oracles

def denoiser_jacobian(model, chi_t: Tensor, t: Tensor) -> Tensor:
    """Mean over examples of |∂χ̂_o / ∂(χ_t)_i|: how much E[χ | χ_t] moves with each input component.

    GDM Prop. 3.3: for a component whose group is not generated yet (pure noise at time t) the optimal
    denoiser's column is exactly zero; a trained one's is small only as far as it learned that.

    Parameters
    ----------
    model : callable
        ``model(chi_t, t) -> Prediction`` (``DiagonalPath.denoiser(net)`` or an oracle's denoiser).
    chi_t : Tensor, shape (B, d)
        States in χ coordinates (any dtype the model takes; use float64 for an oracle).
    t : Tensor, shape (B,)

    Returns
    -------
    Tensor, shape (d, d), float64
        ``J[o, i]`` = mean_b |∂χ̂_o/∂(χ_t)_i| at example b (one backward pass per output component).
    """
    if chi_t.dim() != 2:
        raise ValueError(f"denoiser_jacobian expects flat states (B, d), got {tuple(chi_t.shape)}; "
                         "flatten images first (or pass a low-dimensional toy)")
    chi_t = chi_t.detach().requires_grad_(True)
    with torch.enable_grad():
        x_hat = model(chi_t, t).x_hat  # (B, d)
        rows = []
        for o in range(x_hat.shape[1]):  # row o of every per-example Jacobian at once
            (g,) = torch.autograd.grad(x_hat[:, o].sum(), chi_t, retain_graph=True)
            rows.append(g.abs().double().mean(0))
    return torch.stack(rows)


def group_jacobian(model, chi_t: Tensor, t: Tensor, grouping, outputs=None, probes: int | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """Group-by-group size of the denoiser's Jacobian: mean over examples of ‖∂χ̂_{S_a} / ∂(χ_t)_{S_b}‖_F.

    GDM Prop. 3.3 for images: at a time inside group j's interval the groups generated after j are still
    pure noise, so the optimal denoiser's columns b > j are exactly zero; a trained network's are small
    only as far as it learned that, and as far as its architecture lets it (GroupNorm pools every position:
    see :mod:`gdmkit.norms`).

    Parameters
    ----------
    model : callable
        ``model(chi_t, t) -> Prediction`` (``DiagonalPath.denoiser(net)`` or an oracle's denoiser).
    chi_t : Tensor, shape (B, *event_shape)
    t : Tensor, shape (B,)
    grouping : groupings.Grouping over event_shape (its groups in generation order).
    outputs : sequence of int, optional
        The output groups to compute (rows), default all.
    probes : int, optional
        None (default): exact, one backward pass per component of the output groups. An int: that many
        backward passes per output group, each of v · x̂_{S_a} with v a Rademacher vector on S_a, whose
        squared gradient on S_b has expectation ‖J_ab‖_F² (Hutchinson); for large groups, where d backward
        passes cost too much. An exactly zero block stays exactly zero.
    generator : torch.Generator, optional
        Draws the probes (on ``chi_t``'s device).

    Returns
    -------
    Tensor, shape (len(outputs), k) (default (k, k)), float64
        ``J[a, b]``: output group ``outputs[a]``, input group b; each backward pass covers the whole batch
        (the examples do not interact).
    """
    if tuple(chi_t.shape[1:]) != tuple(grouping.event_shape):
        raise ValueError(f"group_jacobian: states of shape {tuple(chi_t.shape[1:])} do not match the "
                         f"grouping's event shape {tuple(grouping.event_shape)}")
    B, k = chi_t.shape[0], grouping.k
    outputs = list(range(k)) if outputs is None else [int(a) for a in outputs]
    g = grouping.group.reshape(-1).to(chi_t.device)  # (d,) group of each component
    chi_t = chi_t.detach().requires_grad_(True)
    rows = []  # (len(outputs), B, k) squared block norms
    with torch.enable_grad():
        x_hat = model(chi_t, t).x_hat.reshape(B, -1)  # (B, d)
        for a in outputs:
            sq = torch.zeros(B, k, dtype=torch.float64, device=chi_t.device)
            comps = torch.nonzero(g == a).flatten()
            if probes is None:  # row o of every per-example Jacobian at once
                weights = [(comps[i:i + 1], None) for i in range(len(comps))]
            else:
                signs = torch.randint(0, 2, (probes, B, len(comps)), generator=generator, device=chi_t.device)
                weights = [(comps, 2.0 * signs[p].to(x_hat.dtype) - 1.0) for p in range(probes)]
            for cols, v in weights:
                scalar = x_hat[:, cols].sum() if v is None else (x_hat[:, cols] * v).sum()
                (grad,) = torch.autograd.grad(scalar, chi_t, retain_graph=True)
                sq.index_add_(1, g, grad.reshape(B, -1).double().square())
            rows.append(sq if probes is None else sq / probes)
    return torch.stack(rows, 1).sqrt().mean(0)


@torch.no_grad()
def velocity_error(model, reference, chi_t: Tensor, t: Tensor) -> Tensor:
    """Mean over examples of (v − v_ref)² per component: where a trained model's probability-flow
    velocity (GDM eq. 9, 13) departs from the exact one of ``reference`` (an oracle's denoiser).

    ``chi_t`` (B, *event_shape) and ``t`` (B,) are given in the model's dtype; the reference is evaluated
    in float64 and its velocity cast back. Returns a float64 tensor of shape event_shape.
    """
    v = model(chi_t, t).v
    v_ref = reference(chi_t.double(), t.double()).v.to(v.dtype)
    return (v - v_ref).double().square().mean(0)
