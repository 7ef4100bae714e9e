"""GUD §4.2–4.4 and §5.1 in a few helpers: the linear soft-conditioning families, their noising curves,
the Fourier ordering range (κ, δ), dequantisation of few-level data, and the exact-oracle ODE check.

- :func:`fig2_schedules`: the four schedules of GUD Fig. 2 (standard, hierarchy-less, whitened with the
  SNR of standard diffusion, whitened hierarchy-less) as :class:`~gdmkit.schedules.LinearGamma` s.
- :func:`noising_curves`: σ_i(t), γ_i(t) and log SNR_i(t) = log Σ_i − γ_i(t) (eq. 16–17).
- :func:`softness_family`: Fig. 3's family, a ∈ [lo, hi] drawn per batch, l_i = −log Σ_i, unwhitened or
  whitened (§4.4: Σ = 1 in χ, the order keeps the data's −log Σ_i, so a = 1 keeps the SNR of standard
  diffusion, Fig. 2 (c)).
- :func:`ordering_range`, :func:`ordering_family`: Fig. 5's ordering l_i = (1 − r)(−log Σ_i) + r(|k_i| + δ)/κ
  with κ, δ such that l has the same range at r = 1 as at r = 0, (r, a) drawn per batch.
- :func:`dequantize_levels`, :func:`levels_bits_per_dim`: uniform dequantisation of data with L levels on
  [−1, 1] (the 17-level digits) and the bits/dim of the discrete data (GUD App. B).
- :func:`fitted_gaussian`: the Gaussian fitted to the data of a PCA basis, diagonal in it (exact reference).
- :func:`exact_flow_check`: the ODE with the exact denoiser against the closed form (asserted in §5).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import likelihood
from .oracles import DiagonalGaussian
from .schedules import FamilySampler, LinearGamma

__all__ = ["fig2_schedules", "noising_curves", "softness_family", "ordering_range", "ordering_family",
           "dequantize_levels", "levels_bits_per_dim", "fitted_gaussian", "exact_flow_check",
           "FIG2_SETTINGS", "warped_grid", "nats_to_bits_per_dim"]

FIG2_SETTINGS = ("(a) standard", "(b) hierarchy-less", "(c) whitened, SNR of (a)",
                 "(d) whitened, hierarchy-less")


def _log_var(variance: Tensor) -> Tensor:
    v = torch.as_tensor(variance, dtype=torch.float64)
    if not bool((v > 0).all()):
        raise ValueError("the per-component variances Σ_i must be positive; dequantise the data (constant "
                         "pixels have Σ_i = 0) or floor the variances")
    return v.log()


def fig2_schedules(variance: Tensor, *, gamma_denoise: float = -3.0, gamma_noise: float = 3.0,
                   power: float | None = None) -> dict[str, LinearGamma]:
    """The four linear schedules of GUD Fig. 2 (eq. 18–20) for data with per-component variance Σ_i.

    (a) standard diffusion: unwhitened, l_i = −log Σ_i, a = 1 (one γ(t) for every i);
    (b) hierarchy-less: unwhitened, a = 0, so log SNR_i(t) is the same for every i;
    (c) whitened (Σ = 1 in χ), l_i = −log Σ_i, a = 1: the log SNR_i(t) of (a);
    (d) whitened and hierarchy-less: a = 0 (one γ(t) and one SNR for every i).
    Each schedule's ``log_var`` is the log-variance of χ_i, so log SNR_i = log_var_i − γ_i.

    Parameters
    ----------
    variance : Tensor, shape event_shape
        Σ_i of the unwhitened coefficients (a PCA basis' ``labels()["variance"]``).
    """
    lv = _log_var(variance)
    kw = dict(gamma_denoise=gamma_denoise, gamma_noise=gamma_noise, power=power)
    zero = torch.zeros_like(lv)
    args = ((lv, 1.0), (lv, 0.0), (zero, 1.0), (zero, 0.0))  # (log Σ of χ, a) of (a)–(d)
    return {name: LinearGamma(v, -lv, a, **kw) for name, (v, a) in zip(FIG2_SETTINGS, args)}


def noising_curves(schedule: LinearGamma, t: Tensor) -> dict[str, Tensor]:
    """σ_i(t), γ_i(t) and log SNR_i(t) = log Σ_i − γ_i(t) (GUD eq. 16–17), each (T, *event_shape).

    t : Tensor, shape (T,), in [0, 1].
    """
    g = schedule.gamma(t.double())[0]
    return {"sigma": torch.sigmoid(g).sqrt(), "gamma": g, "log_snr": schedule.log_var.to(g) - g}


def softness_family(variance: Tensor, *, whiten: bool, a_range: tuple[float, float] = (0.4, 1.6),
                    gamma_denoise: float = -3.0, gamma_noise: float = 3.0, power: float | None = 0.5,
                    sigma_min: float | None = None) -> FamilySampler:
    """GUD Fig. 3's family: LinearGamma with l_i = −log Σ_i and a drawn uniformly per batch (App. B).

    Unwhitened: log_var = log Σ_i (white prior). Whitened: log_var = 0 (the data divided by √Σ_i, i.e. the
    variance-matching prior, §4.4) with the same order, so a = 1 has the SNR of standard diffusion.
    App. B's defaults for this scan: γ̃_denoise = −3, s(t) with α = 0.5.
    """
    lv = _log_var(variance)
    template = LinearGamma(torch.zeros_like(lv) if whiten else lv, -lv, 1.0, gamma_denoise=gamma_denoise,
                           gamma_noise=gamma_noise, sigma_min=sigma_min, power=power).to_config()
    return FamilySampler(template, {"a": tuple(a_range)})


def ordering_range(log_var: Tensor, freq: Tensor) -> tuple[float, float]:
    """(κ, δ) of GUD §5.1 such that (|k_i| + δ)/κ has the range of −log Σ_i: κ = range(|k|)/range(−log Σ),
    δ = κ · min(−log Σ) − min |k|. Both ranges must be positive."""
    lv = -torch.as_tensor(log_var, dtype=torch.float64)
    k = torch.as_tensor(freq, dtype=torch.float64)
    span_l, span_k = float(lv.max() - lv.min()), float(k.max() - k.min())
    if span_l <= 0 or span_k <= 0:
        raise ValueError("−log Σ and |k| must both vary over the components to match their ranges "
                         f"(ranges {span_l:g} and {span_k:g})")
    kappa = span_k / span_l
    return kappa, kappa * float(lv.min()) - float(k.min())


def ordering_family(log_var: Tensor, freq: Tensor, *, a_range: tuple[float, float] = (0.4, 1.6),
                    r_range: tuple[float, float] = (0.0, 1.0), gamma_denoise: float = -3.0,
                    gamma_noise: float = 3.0, power: float | None = 0.5) -> FamilySampler:
    """GUD Fig. 5's two-parameter family: l_i = (1 − r)(−log Σ_i) + r(|k_i| + δ)/κ, (r, a) drawn per batch.

    Unwhitened (the paper's choice for this experiment). ``member(a=, r=)`` gives one schedule; r = 0,
    a = 1 is standard diffusion.
    """
    lv = torch.as_tensor(log_var, dtype=torch.float64)
    k = torch.as_tensor(freq, dtype=torch.float64)
    kappa, delta = ordering_range(lv, k)
    template = LinearGamma(lv, -lv, 1.0, gamma_denoise=gamma_denoise, gamma_noise=gamma_noise,
                           power=power).to_config()
    return FamilySampler(template, {"a": tuple(a_range), "r": tuple(r_range)},
                         blends={"order": ("r", -lv, (k + delta) / kappa)})


def dequantize_levels(x: Tensor, levels: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation of data on ``levels`` equally spaced values in [−1, 1] (GUD App. B).

    Level k ∈ {0..L−1} sits at k·Δ − 1 with Δ = 2/(L − 1); y = x + (u − ½)Δ, u ~ U(0, 1), so each
    level fills a cell of width Δ and y lies in [−1 − Δ/2, 1 + Δ/2]. x : Tensor, any shape, float.
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    step = 2.0 / (levels - 1)
    k = (x.double() + 1) / step
    off = float((k - k.round()).abs().max())
    if off > 1e-4 or float(k.min()) < -1e-4 or float(k.max()) > levels - 1 + 1e-4:
        raise ValueError(f"x is not on the {levels}-level grid k·{step:g} − 1 of [−1, 1]; pass the raw data")
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    return (x.double() + (u - 0.5) * step).to(x.dtype)


def levels_bits_per_dim(log_px: Tensor, d: int, levels: int) -> Tensor:
    """Bits/dim of L-level data from the density of its dequantised version: −log p/(d ln 2) − log2 Δ with
    the cell width Δ = 2/(L − 1) (P(level) ≈ p(y)·Δ per dimension)."""
    return likelihood.bits_per_dim(log_px, d, bins=levels, data_range=levels * 2.0 / (levels - 1))


def fitted_gaussian(basis) -> DiagonalGaussian:
    """The Gaussian N(mean, cov) fitted to the data of a PCA basis, diagonal in it: coefficient means
    Uᵀ mean and variances the basis' ``labels()["variance"]`` (single-channel or colour-averaged PCA)."""
    mean = basis.to_coeffs(basis.mean[None].to(basis.U.dtype)).reshape(basis.event_shape)
    return DiagonalGaussian(basis, mean.double(), basis.labels()["variance"].double())


def exact_flow_check(gaussian: DiagonalGaussian, path, x: Tensor, **ode_kw) -> dict[str, float | Tensor]:
    """The probability-flow ODE with the exact denoiser against its closed form (GUD eq. 25, App. B).

    Integrates :func:`gdmkit.likelihood.log_likelihood` with ``gaussian.denoiser(path)`` (``ode_kw``:
    divergence, rtol, atol, ...), in float64, and compares with
    :func:`gdmkit.likelihood.gaussian_flow_log_likelihood`. Returns per-example tensors (B,) ``ode``
    (numeric, x coordinates), ``closed``, ``data`` (true log p(x)), ``endpoint`` (closed − data), and
    the float ``max_abs_err`` = max |ode − closed| in nats.
    """
    xd = x.double()
    exact = likelihood.gaussian_flow_log_likelihood(gaussian, path, xd)
    chi0 = path.to_chi(xd)
    ode = likelihood.log_likelihood(gaussian.denoiser(path), chi0, path, **ode_kw) - path.log_det_to_x()
    return {"ode": ode, "closed": exact.ode, "data": exact.data, "endpoint": exact.endpoint,
            "t0": exact.t0, "t1": exact.t1, "max_abs_err": float((ode - exact.ode).abs().max())}


def nats_to_bits_per_dim(nats: float | Tensor, d: int):
    """A log-likelihood difference in nats over d dimensions, in bits/dim (sign kept)."""
    return nats / (d * math.log(2))


def warped_grid(steps: int, power: float | None) -> Tensor:
    """Decreasing times t_0 = 1 > … > t_steps = 0 uniform in s = t^α/(t^α + (1 − t)^α) (GUD App. B):
    t = q/(1 + q) with q = (s/(1 − s))^{1/α}; uniform in t when ``power`` is None. A sampling grid for
    the reparametrised schedules, whose γ′ diverges at t = 0 and t = 1 for α < 1."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if power is None:
        return s.float()
    if not power > 0:
        raise ValueError(f"the reparametrisation power α must be > 0, got {power}")
    q = (s[1:-1] / (1 - s[1:-1])) ** (1.0 / power)
    return torch.cat([s[:1], q / (1 + q), s[-1:]]).float()
