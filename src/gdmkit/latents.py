"""Band-wise operations on the latents of a GDM-F (GDM §3.4, §4.2–4.5, Figs. 3, 4, 6–9).

A GDM-F is a rectified-flow GDM whose groups are frequency bands of an orthogonal frequency basis U
(DCT or Gaussian blur, App. A.4), generated from low to high frequency (eq. 11–17). Its latent is the
state χ_1 = z̄ of the probability-flow ODE at t = 1, in the basis' coordinates: component i of z̄ is
the noise that fills coefficient i of x̄ = Uᵀx. Decoding integrates the ODE from 1 to 0 (eq. 13, 17);
encoding a real image integrates it forward from 0 to 1 (eq. 5, the inversion used for editing, §4.5).

- :data:`PAPER_BAND_STARTS`, :func:`band_starts`, :func:`paper_bands`, :func:`band_labels` — the paper's
  index sets S1 = {0..29}, S2 = {30..99}, S3 = {100..499}, S4 = the rest (§4.3, App. A.3), ranked by
  frequency within a channel and truncated to the image's size;
- :class:`Codec` — encode images to latents and decode latents to images with one path, model and grid;
- :func:`swap` (Fig. 7), :func:`resample` (Fig. 4b, band sensitivity), :func:`fix_and_resample`
  (Fig. 4a, Fig. 9), :func:`traverse` (Figs. 6, 8), :func:`interpolate` (Fig. 3): pure tensor operations
  on latents (B, *event_shape) that change only the components they are given;
- :func:`variance_curve` (Fig. 4a), :func:`gaussian_variance_curve` (its closed form for Gaussian data),
  :func:`reconstruction_curve` (Fig. 4b), :func:`whiteness` (Remark 4.1).

Indices are ranks: a basis' ``labels()["rank"]`` orders the components of each channel from the lowest
frequency (0) up, so "the lowest m components" means every channel's components of rank < m; the paper's
"400 to 700 of 4096 components" (§4.2, 64×64 images) counts the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from . import groupings, sampling, tensors
from .groupings import Grouping
from .paths import DiagonalPath

__all__ = [
    "PAPER_BAND_STARTS", "band_starts", "paper_bands", "band_labels", "rank_mask", "band_mask",
    "lowest_elements", "spectral_gaussian", "first_below", "interval_steps", "Codec",
    "swap", "resample", "fix_and_resample", "traverse", "interpolate", "variance_curve",
    "gaussian_variance_curve", "reconstruction_curve", "band_locality", "ks_statistic", "whiteness",
]

PAPER_BAND_STARTS = (30, 100, 500)  # first ranks of S2, S3, S4 (GDM §4.3, App. A.3)


def band_starts(n_ranks: int, starts: Sequence[int] = PAPER_BAND_STARTS) -> list[int]:
    """The band starts that fall inside an image with ``n_ranks`` components per channel.

    An index is a number of cycles per image at any resolution that holds it, so the paper's sets are
    kept where the image is large enough and the last band is truncated: 16×16 (256 ranks) gives
    [30, 100] (three bands: 0..29, 30..99, 100..255); 64×64 gives all of [30, 100, 500].
    """
    if isinstance(n_ranks, bool) or not isinstance(n_ranks, int) or n_ranks < 1:
        raise ValueError(f"n_ranks must be a positive integer (components per channel), got {n_ranks!r}")
    s = [int(v) for v in starts]
    if any(b <= a for a, b in zip([0] + s, s)):
        raise ValueError(f"band starts must increase strictly from 1, got {list(starts)}")
    return [v for v in s if v < n_ranks]


def paper_bands(basis, starts: Sequence[int] = PAPER_BAND_STARTS) -> Grouping:
    """GDM-F's frequency bands for ``basis`` (its ``labels()["rank"]``), group 0 = S1 = lowest."""
    rank = _rank(basis)
    return groupings.frequency_bands(rank, band_starts(int(rank.max()) + 1, starts))


def band_labels(grouping: Grouping, rank) -> list[str]:
    """"[lo, hi]" rank range of each band, in generation order (GDM's figure legends)."""
    r = _rank(rank)
    return [f"[{int(r[grouping.mask(j)].min())}, {int(r[grouping.mask(j)].max())}]"
            for j in range(grouping.k)]


def _rank(basis_or_rank) -> Tensor:
    if hasattr(basis_or_rank, "labels"):
        return basis_or_rank.labels()["rank"]
    return torch.as_tensor(basis_or_rank)


def rank_mask(rank, m: int) -> Tensor:
    """Components of rank < m (every channel), bool of the event shape: "the lowest m components"."""
    r = _rank(rank)
    if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= int(r.max()) + 1:
        raise ValueError(f"m must be an integer in 0..{int(r.max()) + 1} (components per channel), got {m!r}")
    return r < m


def band_mask(grouping: Grouping, bands: int | Sequence[int]) -> Tensor:
    """Union of the masks of ``bands`` (indices in generation order), bool of the event shape."""
    bands = [bands] if isinstance(bands, int) else list(bands)
    if not bands:
        raise ValueError("band_mask needs at least one band index")
    m = grouping.mask(bands[0])
    for j in bands[1:]:
        m = m | grouping.mask(j)
    return m


def lowest_elements(basis_or_rank, n: int) -> list[tuple[int, ...]]:
    """The n lowest-frequency latent elements (by rank, then channel) as indices into the event shape:
    the elements Figs. 6 and 8 traverse."""
    r = _rank(basis_or_rank)
    if r.ndim != 3:
        raise ValueError(f"lowest_elements needs image ranks (C, H, W), got shape {tuple(r.shape)}")
    idx = torch.nonzero(torch.ones_like(r, dtype=torch.bool))  # (d, 3) in C, H, W order
    key = r.flatten() * r.shape[0] + idx[:, 0]  # rank first, then channel
    order = torch.argsort(key)[:n]
    return [tuple(int(v) for v in idx[i]) for i in order]


def spectral_gaussian(basis, power: float = 2.0, k0: float = 1.0, sigma: float = 1 / 3):
    """Gaussian data diagonal in a frequency basis: x̄_i ~ N(0, v_i), v ∝ (k_h² + k_w² + k0²)^(−power/2)
    with the basis' frequency indices, scaled to mean pixel variance σ² (a natural-image-like spectrum;
    the exact reference of Fig. 4a). Returns an :class:`gdmkit.oracles.DiagonalGaussian`."""
    from .oracles import DiagonalGaussian

    lab = basis.labels()
    if "kh" not in lab or "kw" not in lab:
        raise ValueError("spectral_gaussian needs a frequency basis with kh and kw labels "
                         "(DCT, GaussianBlur)")
    shape = tuple(basis.event_shape)
    v = ((lab["kh"].double() ** 2 + lab["kw"].double() ** 2 + k0**2) ** (-power / 2)).expand(shape)
    v = v * (sigma**2 / v.mean())
    return DiagonalGaussian(basis, torch.zeros(shape), v.contiguous())


def first_below(values: Sequence[float], ms: Sequence[int], fraction: float) -> int | None:
    """The smallest m at which values[m] / values[0] falls to ``fraction`` or below (None: never)."""
    v0 = float(values[0])
    for m, v in zip(ms, values):
        if float(v) <= fraction * v0:
            return int(m)
    return None


def interval_steps(intervals, nfe: int) -> list[int]:
    """Steps per group proportional to the lengths of its generation interval (largest remainders), at
    least one each: what a uniform time grid of ``nfe`` steps would give each group, but aligned with the
    interval ends (GDM Table 2's generation intervals act through this allocation).

    With non-overlapping intervals and a network that sees only A(t), the ODE inside group j's interval is
    dχ_j/dA_j = −u_j(χ, A): the interval's length only rescales time, so two generation intervals with the
    same steps per group give the same samples. The intervals matter through how many steps they get.
    intervals : (k, 2) [t_start, t_end] per group; returns k positive ints summing to ``nfe``.
    """
    iv = torch.as_tensor(intervals, dtype=torch.float64)
    k = iv.shape[0]
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < k:
        raise ValueError(f"nfe must be an integer >= k = {k} (one step per group at least), got {nfe!r}")
    length = (iv[:, 1] - iv[:, 0]).clamp_min(0)
    quota = (nfe - k) * length / length.sum()  # the steps beyond the first one of every group
    steps = quota.floor().long() + 1
    rest = nfe - int(steps.sum())
    order = torch.argsort(-(quota - quota.floor()), stable=True)
    steps[order[:rest]] += 1
    return [int(v) for v in steps]


# ------------------------------------------------------------------------------------------ encode/decode
@dataclass
class Codec:
    """Images ↔ latents through the probability-flow ODE of one path and model (GDM eq. 5, 13, 17).

    Parameters
    ----------
    path : DiagonalPath
        Basis and (generation) schedule; latents live in its χ coordinates.
    model : callable
        ``model(chi_t, t, side=) -> Prediction``: ``path.denoiser(net)`` or an oracle's ``denoiser(path)``.
    ts : Tensor, shape (N + 1,)
        Decreasing grid from 1 to 0 (e.g. ``path.schedule.time_grid(per_group_steps(k, nfe))``, aligned
        with the schedule's kinks); encoding runs it backwards.
    solver : callable
        A :mod:`gdmkit.sampling` ODE solver (default Heun: encode∘decode is closer to the identity).
    batch_size : int, optional
        Images integrated at a time (results do not depend on it).

    ``nfe`` counts the model evaluations spent so far.
    """

    path: DiagonalPath
    model: Callable
    ts: Tensor
    solver: Callable = sampling.heun
    batch_size: int | None = None

    def __post_init__(self):
        self.counter = sampling.CountingModel(self.model)

    @property
    def nfe(self) -> int:
        return self.counter.nfe

    def decode(self, z: Tensor) -> Tensor:
        """Latents z (B, *event_shape) in χ coordinates -> images (B, *event_shape) in data space."""
        return sampling.generate(self.path, self.counter, len(z), self.ts, solver=self.solver, latents=z,
                                 batch_size=self.batch_size)

    __call__ = decode

    def encode(self, x: Tensor) -> Tensor:
        """Images x (B, *event_shape) -> latents χ_1 (B, *event_shape): the forward ODE from t = 0 to 1."""
        chi = self.path.to_chi(x)
        return torch.cat([sampling.encode(self.counter, c, self.ts, solver=self.solver)
                          for c in chi.split(self.batch_size or len(chi))])


# ------------------------------------------------------------------------------------------ latent ops
def _event_mask(mask: Tensor, z: Tensor) -> Tensor:
    mask = torch.as_tensor(mask, dtype=torch.bool, device=z.device)
    if tuple(mask.shape) != tuple(z.shape[1:]):
        raise ValueError(f"the mask has shape {tuple(mask.shape)} but the latents' event shape is "
                         f"{tuple(z.shape[1:])}: build it with band_mask / rank_mask for this basis")
    return mask


def swap(z_orig: Tensor, z_ref: Tensor, mask: Tensor) -> Tensor:
    """Image mixing (GDM Fig. 7): ``z_orig`` with the masked components taken from ``z_ref``.

    z_orig, z_ref : (B, *event_shape); mask : bool, event_shape. Components outside the mask are
    ``z_orig``'s exactly.
    """
    if z_orig.shape != z_ref.shape:
        raise ValueError(f"z_orig {tuple(z_orig.shape)} and z_ref {tuple(z_ref.shape)} must have one shape; "
                         "pair each original with one reference")
    return torch.where(_event_mask(mask, z_orig), z_ref, z_orig)


def resample(z: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z`` (B, *event_shape) with the masked components redrawn from the prior N(0, 1) (Fig. 4b)."""
    fresh = tensors.randn(z.shape, generator, device=z.device, dtype=z.dtype)
    return torch.where(_event_mask(mask, z), fresh, z)


def fix_and_resample(z_base: Tensor, keep: Tensor, n: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """Image variation (Figs. 4a, 9): n latents sharing ``z_base``'s components on ``keep``, the rest
    drawn fresh from N(0, 1).

    z_base : (*event_shape); keep : bool, event_shape. Returns (n, *event_shape).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (variations per base latent), got {n!r}")
    fresh = tensors.randn((n, *z_base.shape), generator, device=z_base.device, dtype=z_base.dtype)
    return torch.where(_event_mask(keep, fresh), z_base.expand_as(fresh), fresh)


def traverse(z: Tensor, index: Sequence[int], values: Sequence[float] | Tensor) -> Tensor:
    """Single-element traversal (Fig. 6) and attribute editing (Fig. 8): copies of ``z`` (*event_shape)
    with the element at ``index`` (a tuple into the event shape, e.g. (c, k_h, k_w)) set to each value.

    Returns (len(values), *event_shape).
    """
    index = tuple(int(i) for i in index)
    if len(index) != z.ndim or any(not 0 <= i < s for i, s in zip(index, z.shape)):
        raise ValueError(f"index {index} does not point into the latent's shape {tuple(z.shape)}: give one "
                         "position per axis, e.g. (channel, row, column)")
    v = torch.as_tensor(values, dtype=z.dtype, device=z.device).flatten()
    out = z.expand(len(v), *z.shape).clone()
    out[(slice(None), *index)] = v
    return out


def interpolate(z0: Tensor, z1: Tensor, mask: Tensor, weights: Sequence[float] | Tensor,
                spherical: bool = True) -> Tensor:
    """Band interpolation (Fig. 3): the masked components go from ``z0`` (w = 0) to ``z1`` (w = 1), the
    others stay ``z0``'s.

    z0, z1 : (*event_shape); mask : bool, event_shape; weights : (W,). ``spherical``: slerp of the
    masked sub-vectors (keeps a Gaussian latent's norm, so intermediate latents look like prior draws),
    else linear. Returns (W, *event_shape).
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 {tuple(z0.shape)} and z1 {tuple(z1.shape)} must have one shape")
    m = _event_mask(mask, z0[None])
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    a, b = z0[m].double(), z1[m].double()
    if spherical:
        cos = (a @ b / (a.norm() * b.norm()).clamp_min(1e-30)).clamp(-1, 1)
        theta = torch.arccos(cos)
        if float(theta) < 1e-6:  # (anti)parallel to round-off: slerp is the linear path
            ca, cb = 1 - w, w
        else:
            ca, cb = torch.sin((1 - w) * theta) / torch.sin(theta), torch.sin(w * theta) / torch.sin(theta)
    else:
        ca, cb = 1 - w, w
    out = z0.expand(len(w), *z0.shape).clone()
    out[:, m] = (ca[:, None] * a + cb[:, None] * b).to(z0.dtype)
    return out


# ------------------------------------------------------------------------------------------ measurements
def _features(features, x: Tensor) -> Tensor:
    from .features import extract

    return extract(features, x)


@torch.no_grad()
def variance_curve(decode: Callable[[Tensor], Tensor], rank, ms: Sequence[int], features: Sequence,
                   *, n_base: int, n_var: int, generator: torch.Generator | None = None):
    """GDM Fig. 4a: perceptual variance E‖φ(x) − E φ(x)‖² of images decoded from latents whose lowest m
    components are fixed and the rest resampled, against m.

    For each of ``n_base`` base latents (drawn first), ``n_var`` variations share the base's components of
    rank < m and draw the rest; the same fresh draws serve every m (common random numbers), so the curve
    compares fixings, not draws. The expectations are sample means over the variations
    (:func:`gdmkit.metrics.perceptual_variance`), the estimate is averaged over the base latents.

    Parameters
    ----------
    decode : callable, latents (B, *event_shape) -> images (B, C, H, W) (e.g. a :class:`Codec`)
    rank : Tensor, event_shape (or a basis): the components' frequency rank
    ms : sequence of int, the numbers of fixed components per channel (0 = nothing fixed)
    features : sequence of FeatureExtractor φ (``name`` labels each curve)

    Returns
    -------
    xarray.Dataset with ``pv`` (feature, m, base): one estimate per base latent.
    """
    import xarray as xr

    r = _rank(rank)
    shape = tuple(r.shape)
    z_base = tensors.randn((n_base, *shape), generator)
    fresh = tensors.randn((n_base, n_var, *shape), generator)
    pv = torch.zeros(len(features), len(ms), n_base, dtype=torch.float64)
    for a, m in enumerate(ms):
        keep = rank_mask(r, int(m))
        z = torch.where(keep, z_base[:, None], fresh).reshape(n_base * n_var, *shape)
        x = decode(z)
        x = x.reshape(n_base, n_var, *x.shape[1:])
        for f, phi in enumerate(features):
            for b in range(n_base):
                y = _features(phi, x[b])
                pv[f, a, b] = ((y - y.mean(0)) ** 2).sum(1).mean()
    return xr.Dataset({"pv": (("feature", "m", "base"), pv.numpy())},
                      coords={"feature": [phi.name for phi in features], "m": [int(m) for m in ms],
                              "base": list(range(n_base))},
                      attrs={"n_var": n_var, "statistic": "E|phi(x) - E phi(x)|^2 over n_var variations "
                                                          "sharing the components of rank < m"})


def gaussian_variance_curve(var: Tensor, rank, ms: Sequence[int], n_var: int) -> tuple[Tensor, Tensor]:
    """Closed form of Fig. 4a in pixel features for Gaussian data diagonal in the basis, x̄_i ~ N(m_i, v_i).

    With an exact flow every latent component maps to its own coefficient (the flow of a diagonal
    Gaussian is diagonal), so the variations are exact draws with the fixed coefficients held: the pixel
    variance (U orthogonal) of n draws is Σ_{rank ≥ m} v_i/n · χ²_{n−1}. Returns (mean, std) of the
    estimator per m, each (len(ms),) float64: mean = (n−1)/n Σ v_i, var = 2(n−1)/n² Σ v_i².
    """
    r, v = _rank(rank), torch.as_tensor(var, dtype=torch.float64)
    if v.shape != r.shape:
        raise ValueError(f"var {tuple(v.shape)} must have the event shape {tuple(r.shape)}")
    free = [v[r >= int(m)] for m in ms]
    mean = torch.stack([(n_var - 1) / n_var * f.sum() for f in free])
    std = torch.stack([math.sqrt(2 * (n_var - 1)) / n_var * f.square().sum().sqrt() for f in free])
    return mean, std


@torch.no_grad()
def reconstruction_curve(codec, x: Tensor, rank, ms: Sequence[int], *, z: Tensor | None = None,
                         generator: torch.Generator | None = None):
    """GDM Fig. 4b: encode real images, keep the latents' lowest m components, resample the rest, decode;
    mean squared error per pixel against the originals, for each m.

    ``z`` (the encodings of ``x``) may be given to reuse them. The same fresh draws serve every m.
    Returns (xarray.Dataset with ``mse`` (m, image), the encodings z (N, *event_shape)).
    """
    import xarray as xr

    r = _rank(rank)
    z = codec.encode(x) if z is None else z
    fresh = tensors.randn(z.shape, generator, device=z.device, dtype=z.dtype)
    mse = torch.zeros(len(ms), len(x), dtype=torch.float64)
    for a, m in enumerate(ms):
        x_rec = codec.decode(torch.where(rank_mask(r, int(m)), z, fresh))
        mse[a] = (x_rec - x).double().square().flatten(1).mean(1)
    ds = xr.Dataset({"mse": (("m", "image"), mse.numpy())},
                    coords={"m": [int(m) for m in ms], "image": list(range(len(x)))},
                    attrs={"statistic": "mean squared pixel error of decode(keep rank < m, resample rest)"})
    return ds, z


@torch.no_grad()
def band_locality(codec, z: Tensor, grouping: Grouping, generator: torch.Generator | None = None):
    """Prop. 3.3 on a decoder: resample band j's latents and measure the mean |Δ| of the decoded image's
    basis coefficients in the bands generated before j, in band j and after j.

    For the optimal denoiser the bands generated before j do not move at all (it ignores components not
    generated yet, and a band is frozen once generated, eq. 10); the bands after j are generated
    conditionally on j and may move. ``codec`` has ``decode`` and a ``path`` (its basis maps images to
    coefficients). Returns a pandas DataFrame, one row per band, with before / inside / after and the
    ratios before / inside, after / inside (NaN where a region is empty: the first band has no before).
    """
    import pandas as pd

    c0 = codec.path.basis.to_coeffs(codec.decode(z))
    rows = []
    for j in range(grouping.k):
        d = (codec.path.basis.to_coeffs(codec.decode(resample(z, grouping.mask(j), generator))) - c0).abs()
        d = d.double()
        region = {"before": grouping.group < j, "inside": grouping.group == j, "after": grouping.group > j}
        row = {"band": j}
        for name, m in region.items():
            row[name] = float(d[:, m].mean()) if bool(m.any()) else float("nan")
        row["before / inside"] = row["before"] / row["inside"]
        row["after / inside"] = row["after"] / row["inside"]
        rows.append(row)
    return pd.DataFrame(rows)


def ks_statistic(x: Tensor) -> Tensor:
    """Two-sided one-sample Kolmogorov–Smirnov statistic D = sup |F_N − Φ| of each column of x (N, d)
    against N(0, 1), shape (d,): max over the order statistics of i/N − Φ(x₍ᵢ₎) and Φ(x₍ᵢ₎) − (i−1)/N.
    The test at level α rejects iff D > ``scipy.stats.kstwo.isf(α, N)`` (the exact null law of D), which
    is what ``scipy.stats.kstest(x, "norm").pvalue < α`` decides, without a p-value per column."""
    n = x.shape[0]
    cdf = torch.special.ndtr(x.double().sort(0).values)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)[:, None]
    return torch.maximum((i / n - cdf).amax(0), (cdf - (i - 1) / n).amax(0))


def whiteness(z: Tensor, grouping: Grouping, *, alpha: float = 0.01):
    """Remark 4.1: how close encoded latents are to N(0, I) with zero total correlation, per band.

    For the band's components z_b (N, d_b): ``cov_ratio`` = ‖zᵀz/N − I‖_F² / (d(d+1)/N), whose expectation
    is exactly 1 for N(0, I) latents (N·zᵀz/N is Wishart(I, N)): 1 means as white as prior noise, larger
    means correlated, shifted or mis-scaled; ``mean_sq`` = mean of z² (1 for the prior); ``ks_reject`` =
    share of components whose one-sample Kolmogorov–Smirnov test against N(0, 1) rejects at level
    ``alpha`` (expected ``alpha`` for the prior); ``gauss_tc`` = −½ log det of the band's correlation
    matrix, the total correlation of a Gaussian with that correlation (0 when uncorrelated; its sampling
    bias for white data is about d(d−1)/(4N)). Returns a pandas DataFrame, one row per band.
    """
    import pandas as pd
    from scipy import stats

    rows = []
    zf = z.detach().cpu().double()
    for j in range(grouping.k):
        zb = zf[:, grouping.mask(j)]  # (N, d)
        n, d = zb.shape
        # ‖zᵀz/N − I‖_F² = ‖z zᵀ‖_F²/N² − 2‖z‖_F²/N + d: an N × N Gram matrix, never the d × d one
        dev = (zb @ zb.T).square().sum() / n**2 - 2 * zb.square().sum() / n + d
        tc = float("nan")  # the correlation matrix is singular unless N > d
        if n > d:
            logdet = torch.linalg.slogdet(torch.corrcoef(zb.T).reshape(d, d))
            tc = float(-0.5 * logdet.logabsdet) if logdet.sign > 0 else tc
        rows.append({"band": j, "d": d, "N": n, "cov_ratio": float(dev / (d * (d + 1) / n)),
                     "mean_sq": float(zb.square().mean()),
                     "ks_reject": float((ks_statistic(zb) > stats.kstwo.isf(alpha, n)).double().mean()),
                     "gauss_tc": tc})
    return pd.DataFrame(rows)
