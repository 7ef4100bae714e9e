"""Exact likelihood through the probability-flow ODE (GUD App. B eq. 25; FFJORD / Song et al. 2021).

Integrating dχ/dt = v(χ, t) from t = 0 to 1 together with d/dt Δ = ∇·v gives

    log p_0(χ_0) = log N(χ_1; 0, I) + ∫_0^1 ∇·v(χ_t, t) dt,

with the divergence exact (d backward passes, small d) or by Hutchinson's estimator E[εᵀ (∂v/∂χ) ε]
with fixed Rademacher probes. The adaptive solver is torchdiffeq's (dopri5 by default); piecewise
schedules are integrated segment by segment between their kinks (``Schedule.breakpoints``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchdiffeq import odeint

from .paths import DiagonalPath
from .tensors import randint, times_like

__all__ = ["log_likelihood", "bits_per_dim", "data_bits_per_dim"]


def _divergence(v_fn, chi: Tensor, probes: Tensor | None) -> tuple[Tensor, Tensor]:
    """(v, ∇·v) per example; exact when ``probes`` is None, else Hutchinson averaged over probes."""
    with torch.enable_grad():
        chi = chi.detach().requires_grad_(True)
        v = v_fn(chi)
        if probes is None:
            flat = v.flatten(1)
            div = torch.zeros(chi.shape[0], device=chi.device, dtype=chi.dtype)
            for i in range(flat.shape[1]):
                g = torch.autograd.grad(flat[:, i].sum(), chi, retain_graph=True)[0]
                div = div + g.flatten(1)[:, i]
        else:
            div = 0.0
            for p in probes:
                g = torch.autograd.grad((v * p).sum(), chi, retain_graph=True)[0]
                div = div + (g * p).flatten(1).sum(1)
            div = div / probes.shape[0]
    return v.detach(), div.detach()


def log_likelihood(model, chi0: Tensor, path: DiagonalPath, *, divergence: str = "hutchinson",
                   n_probes: int = 1,
                   generator: torch.Generator | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                   method: str = "dopri5") -> Tensor:
    """log p_0(χ_0) in χ coordinates, shape (B,), for ``model(chi, t, side) -> Prediction``.

    Parameters
    ----------
    chi0 : Tensor, shape (B, *event_shape)
        Data in the path's coordinates (``path.to_chi(x)``).
    divergence : {"hutchinson", "exact"}
        "exact" costs d backward passes per evaluation; use it for small d.
    n_probes : int
        Rademacher probes per example for Hutchinson (fixed along the trajectory).
    """
    if divergence not in ("hutchinson", "exact"):
        raise ValueError(f"divergence must be 'hutchinson' or 'exact', got {divergence!r}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    probes = None
    if divergence == "hutchinson":
        r = randint(0, 2, (n_probes, *chi0.shape), generator, device=chi0.device)
        probes = (2.0 * r - 1.0).to(chi0)
    knots = [0.0] + sorted(path.schedule.breakpoints()) + [1.0]
    chi, delta = chi0.detach(), torch.zeros(chi0.shape[0], device=chi0.device, dtype=chi0.dtype)
    for a, b in zip(knots[:-1], knots[1:]):
        mid = 0.5 * (a + b)

        def rhs(t: Tensor, state: tuple[Tensor, Tensor]):
            x = state[0]
            side = "right" if float(t) < mid else "left"
            tv = times_like(float(t), x)
            v, div = _divergence(lambda y: model(y, tv, side=side).v, x, probes)
            return v, div

        span = torch.tensor([a, b], device=chi0.device, dtype=chi0.dtype)
        chis, deltas = odeint(rhs, (chi, delta), span, rtol=rtol, atol=atol, method=method)
        chi, delta = chis[-1], deltas[-1]
    d = chi[0].numel()
    prior = -0.5 * (chi.flatten(1).square().sum(1) + d * math.log(2 * math.pi))
    return prior + delta


def bits_per_dim(log_px: Tensor, d: int, bins: int = 256, data_range: float = 2.0) -> Tensor:
    """Bits per dimension of uniformly dequantised data (GUD App. B).

    Data scaled from {0..bins−1} + U(0,1) to an interval of length ``data_range``:
    bpd = −log p_x / (d ln 2) + log2(bins / data_range).
    """
    return -log_px / (d * math.log(2)) + math.log2(bins / data_range)


def data_bits_per_dim(model, x: Tensor, path: DiagonalPath, *, bins: int = 256, data_range: float = 2.0,
                      **kwargs) -> Tensor:
    """Bits/dim of data-space x (B, *event_shape): encode, ODE likelihood, change of variables, bpd."""
    log_pchi = log_likelihood(model, path.to_chi(x), path, **kwargs)
    log_px = log_pchi - path.log_det_to_x()
    return bits_per_dim(log_px, x[0].numel(), bins=bins, data_range=data_range)
