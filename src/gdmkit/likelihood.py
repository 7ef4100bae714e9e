"""Exact likelihood through the probability-flow ODE (GUD App. B eq. 25; FFJORD / Song et al. 2021).

Integrating dχ/dt = v(χ, t) from t = 0 to 1 together with d/dt Δ = ∇·v gives

    log p_0(χ_0) = log N(χ_1; 0, I) + ∫_0^1 ∇·v(χ_t, t) dt,

with the divergence exact (d Jacobian-vector rows, batched), by Hutchinson's estimator
E[εᵀ (∂v/∂χ) ε] with fixed Rademacher probes, or in closed form where the model supplies it (the exact
Gaussian oracles' ``model.divergence``). One network call per evaluation gives both v and ∇·v.

How it is integrated:

- The state is one flat tensor (B, d + 1) = [χ, Δ], so the adaptive solver's error norm is the RMS over
  the joined state (torchdiffeq's default for a single tensor), not the max of per-tensor norms.
- Piecewise schedules: an adaptive method integrates in one solve, each kink (``Schedule.breakpoints``)
  a jump (a step ends on it, the velocity is re-evaluated on its far side) and the last step ending on
  t = 1 (torchdiffeq otherwise steps past the end, calls the network there and interpolates back); a
  fixed-step method integrates segment by segment between the kinks.
- GUD's time reparametrisation s(t) = t^α / (t^α + (1 − t)^α) (App. B; :class:`LinearGamma` with
  ``power``) has s′ → ∞ at the ends for α < 1. The ODE is then integrated in u = s(t), where the schedule
  is linear: dχ/du = v / s′(t), exact for the schedule's own (end-clamped) s′, and smooth.
- The solver (``method``), ``rtol``, ``atol`` and its ``options`` are arguments; GUD App. B uses Tsitouras'
  5(4) pair at rtol = atol = 1e-4. "tsit5" and "rk45" (Dormand–Prince with its standard error estimate, as
  SciPy's RK45) are :mod:`gdmkit.ode`'s; every other name is torchdiffeq's. The default, torchdiffeq's
  "dopri5", estimates the error with Shampine's weights and takes larger steps at the same tolerance: on
  the exact oracle of ``benchmarks/likelihood_bench.py`` (a Gaussian random field, 16×16) its error at
  1e-4 is 3.7× RK45's, at 0.86–1× RK45's evaluations on that benchmark's trained U-Net; "tsit5" is the
  most accurate at 1e-5 on the oracle and takes 1.1–1.4× RK45's evaluations on the trained U-Net
  (``reports/benchmarks.json``, groups ``likelihood`` and ``likelihood_accuracy``). What a network costs
  the solver depends on its time embedding: see ``GammaSchedule.summary_scale``.
  ``stats`` receives the number of network evaluations.
"""
from __future__ import annotations

import bisect
import math
from typing import NamedTuple

import torch
from torch import Tensor
from torchdiffeq import odeint

from . import ode
from .oracles import DiagonalGaussian
from .paths import DiagonalPath
from .tensors import randint, times_like

__all__ = ["log_likelihood", "bits_per_dim", "data_bits_per_dim", "ExactFlow", "gaussian_flow_log_likelihood",
           "exact_divergence", "hutchinson_divergence"]

#: torchdiffeq's adaptive Runge–Kutta methods (they take ``jump_t`` / ``step_t`` / ``first_step``) and
#: their orders
_ADAPTIVE = {"dopri8": 8, "dopri5": 5, "bosh3": 3, "fehlberg2": 2, "adaptive_heun": 2}


def _first_step(f, u0: float, y0: Tensor, f0: Tensor, order: int, rtol: float, atol: float,
                length: float) -> float:
    """Hairer, Nørsett & Wanner's initial step (Solving ODEs I, §II.4), as torchdiffeq's, but never
    longer than the interval (torchdiffeq's trial point t0 + h0 is unbounded: a network would be called
    far past t = 1, and the first step sized from it)."""
    rms = lambda z: float(z.square().mean().sqrt())  # noqa: E731 (torchdiffeq's norm for one tensor)
    scale = atol + y0.abs() * rtol
    d0, d1 = rms(y0 / scale), rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, length)
    f1 = f(torch.tensor(u0 + h0, dtype=y0.dtype, device=y0.device), y0 + h0 * f0)
    d2 = rms((f1 - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / order)
    return min(100 * h0, h1, length)


def hutchinson_divergence(v_fn, chi: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
    """(v, mean over probes of εᵀ (∂v/∂χ) ε), shapes (B, *event) and (B,); ``probes`` (P, B, *event).

    One forward pass, P backward passes; the graph is released after the last one.
    """
    with torch.enable_grad():
        chi = chi.detach().requires_grad_(True)
        v = v_fn(chi)
        div = torch.zeros(chi.shape[0], device=chi.device, dtype=chi.dtype)
        for j, p in enumerate(probes):
            (g,) = torch.autograd.grad(v, chi, grad_outputs=p, retain_graph=j < len(probes) - 1)
            div = div + (g * p).flatten(1).sum(1)
    return v.detach(), (div / len(probes)).detach()


def exact_divergence(v_fn, chi: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """(v, tr ∂v/∂χ) per example, shapes (B, *event) and (B,): the Jacobian's diagonal, exactly.

    The d rows eᵢᵀ ∂v/∂χ are computed ``chunk`` at a time in one batched backward pass each
    (``is_grads_batched``; default chunk: 256 // B rows, at least 1), instead of d sequential
    passes. Memory grows with chunk × B × (the network's activations).
    """
    with torch.enable_grad():
        chi = chi.detach().requires_grad_(True)
        v = v_fn(chi)
        B, d = v.shape[0], v[0].numel()
        c = max(1, min(d, 256 // B)) if chunk is None else int(chunk)
        if c < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        div = torch.zeros(B, device=chi.device, dtype=chi.dtype)
        starts = list(range(0, d, c))
        for n, i0 in enumerate(starts):
            idx = torch.arange(i0, min(d, i0 + c), device=chi.device)
            rows = torch.zeros(len(idx), B, d, device=chi.device, dtype=v.dtype)   # rows e_i, no d × d identity
            rows[torch.arange(len(idx), device=chi.device), :, idx] = 1
            rows = rows.reshape(len(idx), *v.shape)
            (g,) = torch.autograd.grad(v, chi, grad_outputs=rows, retain_graph=n < len(starts) - 1,
                                       is_grads_batched=True)
            div = div + g.flatten(2).gather(2, idx[:, None, None].expand(len(idx), B, 1)).sum((0, 2))
    return v.detach(), div.detach()


def _warp(schedule):
    """(s(t), t(u), s′(t)) when the schedule is linear in u = s(t) with s′ singular at the ends, else None.

    s(t) = t^α / (t^α + (1 − t)^α) inverts to t(u) = u^{1/α} / (u^{1/α} + (1 − u)^{1/α}); s′ is the
    schedule's own (end-clamped) derivative, so v / s′ is the exact du-velocity of the model's v.
    """
    from .schedules import LinearGamma, time_reparam

    if not isinstance(schedule, LinearGamma) or schedule.power is None:
        return None
    alpha = schedule.power

    def t_of(u: float) -> float:
        if u <= 0.0 or u >= 1.0:
            return min(max(u, 0.0), 1.0)
        a, b = u ** (1 / alpha), (1 - u) ** (1 / alpha)
        return a / (a + b)

    def s_of(t: float) -> float:
        return float(time_reparam(torch.tensor(t, dtype=torch.float64), alpha)[0])

    def ds(t: Tensor) -> Tensor:
        return time_reparam(t, alpha)[1]
    return s_of, t_of, ds


def log_likelihood(model, chi0: Tensor, path: DiagonalPath, *, divergence: str = "hutchinson",
                   n_probes: int = 1, generator: torch.Generator | None = None, rtol: float = 1e-5,
                   atol: float = 1e-5, method: str = "dopri5", options: dict | None = None,
                   exact_chunk: int | None = None, probes: Tensor | None = None,
                   stats: dict | None = None) -> Tensor:
    """log p_0(χ_0) in χ coordinates, shape (B,), for ``model(chi, t, side) -> Prediction`` (GUD eq. 25).

    Parameters
    ----------
    chi0 : Tensor, shape (B, *event_shape)
        Data in the path's coordinates (``path.to_chi(x)``).
    divergence : {"hutchinson", "exact", "closed_form"}
        "exact": the Jacobian trace by batched backward passes (:func:`exact_divergence`); for d up to a
        few hundred. "hutchinson": ``n_probes`` fixed Rademacher probes per example. "closed_form": the
        model's own ``model.divergence(chi, t, side) -> (B,)``, which the exact Gaussian oracles carry
        (``DiagonalGaussian.denoiser``, ``stationarity.GaussianWindow.denoiser``): exact, no backward pass.
    rtol, atol, method, options
        Tolerances, the solver and its options: "tsit5" or "rk45" (:func:`gdmkit.ode.solve`; options
        ``first_step``, ``max_steps``), or a torchdiffeq ``odeint`` method ("dopri5", "bosh3", "rk4", ...;
        options e.g. ``{"first_step": 0.01}`` for adaptive methods, ``{"step_size": 0.01}`` for fixed-step
        ones).
    exact_chunk : int, optional
        Rows per batched backward pass for ``divergence="exact"``.
    probes : Tensor, shape (P, B, *event_shape), optional
        Hutchinson probes to use instead of drawing ``n_probes`` Rademacher ones from ``generator``.
    stats : dict, optional
        Filled with ``{"nfe": network evaluations, "segments": integrated segments}`` (and the accepted and
        rejected steps for "tsit5" and "rk45").
    """
    if divergence not in ("hutchinson", "exact", "closed_form"):
        raise ValueError(f"divergence must be 'hutchinson', 'exact' or 'closed_form', got {divergence!r}")
    if divergence == "closed_form" and not callable(getattr(model, "divergence", None)):
        raise ValueError("divergence='closed_form' needs a model with a divergence(chi, t, side) method (the "
                         "exact oracles' denoisers have one); for a network use 'exact' or 'hutchinson'")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    shape, B = tuple(chi0.shape), chi0.shape[0]
    d = chi0[0].numel()
    if divergence == "hutchinson":
        if probes is None:
            r = randint(0, 2, (n_probes, *shape), generator, device=chi0.device)
            probes = (2.0 * r - 1.0).to(chi0)
        elif probes.dim() != chi0.dim() + 1 or tuple(probes.shape[1:]) != shape:
            raise ValueError(f"probes must have shape (P, *chi0.shape) = (P, {', '.join(map(str, shape))}), "
                             f"got {tuple(probes.shape)}")
        probes = probes.to(chi0)

        def div_fn(f, x):
            return hutchinson_divergence(f, x, probes)
    elif divergence == "exact":
        def div_fn(f, x):
            return exact_divergence(f, x, exact_chunk)
    warp = _warp(path.schedule)
    # the kinks in t and in the integration variable u (= s(t) under the warp), the latter in the state's
    # dtype: the time torchdiffeq hands to rhs, perturbed by one ulp at a kink (just before it for a step's
    # last stage, just after it for the re-evaluation that starts the next step)
    knots, knots_u = [], []
    for k in [0.0] + sorted({float(k) for k in path.schedule.breakpoints() if 0.0 < k < 1.0}) + [1.0]:
        ku = float(torch.tensor(warp[0](k) if warp is not None else k, dtype=chi0.dtype))
        if not knots_u or ku > knots_u[-1]:
            knots.append(k)
            knots_u.append(ku)
    nfe = [0]
    y = torch.cat([chi0.detach().reshape(B, d), torch.zeros(B, 1, device=chi0.device, dtype=chi0.dtype)], 1)

    fixed_seg = [None]  # the segment a fixed-step solve is in (its grid ends on the kink, unperturbed)

    def field(uf: float, state: Tensor, seg: int) -> Tensor:
        nfe[0] += 1
        t = warp[1](uf) if warp is not None else uf
        side = "right" if t < 0.5 * (knots[seg] + knots[seg + 1]) else "left"
        tv = times_like(t, state)
        chi = state[:, :d].reshape(shape)
        if divergence == "closed_form":
            with torch.no_grad():
                v, div = model(chi, tv, side=side).v, model.divergence(chi, tv, side=side)
        else:
            v, div = div_fn(lambda c: model(c, tv, side=side).v, chi)
        out = torch.cat([v.reshape(B, d), div[:, None]], 1)
        if warp is not None:
            out = out / warp[2](tv)[:, None].to(out)
        return out

    def rhs(u: Tensor, state: Tensor) -> Tensor:  # torchdiffeq's signature; the segment from the time
        uf = float(u)
        seg = (fixed_seg[0] if fixed_seg[0] is not None
               else min(max(bisect.bisect_right(knots_u, uf) - 1, 0), len(knots) - 2))
        return field(uf, state, seg)

    def span(a: float, b: float) -> Tensor:
        return torch.tensor([a, b], device=chi0.device, dtype=chi0.dtype)

    if method in ode.TABLEAUS:
        # GUD App. B's Tsit5 (or Dormand–Prince with its standard error estimate): a step never straddles
        # a kink, the velocity is re-evaluated on its far side, the last step ends on u = 1
        o = dict(options or {})
        if set(o) - {"first_step", "max_steps"}:
            raise ValueError(f"method={method!r} takes the options first_step and max_steps, got "
                             f"{sorted(set(o) - {'first_step', 'max_steps'})}")
        st = {}
        y = ode.solve(field, y, knots_u[0], knots_u[-1], rtol=rtol, atol=atol, tableau=ode.TABLEAUS[method],
                      knots=knots_u[1:-1], stats=st, **o)
        if stats is not None:
            stats.update(accepted=st["accepted"], rejected=st["rejected"])
    elif method in _ADAPTIVE:
        # one adaptive solve: the step size carries across kinks; each kink is a jump (a step ends on it
        # and the velocity is re-evaluated on its far side), and the last step ends on u = 1 instead of
        # stepping past it (the network is never called beyond the path's end) and interpolating back
        opts = dict(options or {})
        opts.setdefault("jump_t", torch.tensor(knots_u[1:-1], dtype=torch.float64))
        opts.setdefault("step_t", torch.tensor(knots_u[-1:], dtype=torch.float64))
        first = {}
        if "first_step" not in opts:
            first["f0"] = rhs(span(knots_u[0], knots_u[0])[0], y)
            opts["first_step"] = _first_step(rhs, knots_u[0], y, first["f0"], _ADAPTIVE[method], rtol, atol,
                                             knots_u[-1] - knots_u[0])

        def rhs_once(u: Tensor, state: Tensor) -> Tensor:
            # the solver's own first call is f(u0, y0), evaluated above already
            return first.pop("f0") if first and state is y else rhs(u, state)
        y = odeint(rhs_once, y, span(knots_u[0], knots_u[-1]), rtol=rtol, atol=atol, method=method,
                   options=opts)[-1]
    else:  # a fixed grid per segment, so that no step straddles a kink
        for fixed_seg[0], (a, b) in enumerate(zip(knots_u[:-1], knots_u[1:])):
            y = odeint(rhs, y, span(a, b), rtol=rtol, atol=atol, method=method, options=options)[-1]
    if stats is not None:
        stats.update(nfe=nfe[0], segments=len(knots) - 1)
    chi1, delta = y[:, :d], y[:, d]
    prior = -0.5 * (chi1.square().sum(1) + d * math.log(2 * math.pi))
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


class ExactFlow(NamedTuple):
    """Closed-form likelihoods of Gaussian data under a diagonal path, each (B,), nats, x coordinates.

    ``ode`` is what :func:`log_likelihood` returns (then minus ``log_det_to_x``) with the exact denoiser;
    ``data`` the true log p(x); ``endpoint = ode − data = t0 + t1`` the part the schedule's endpoints
    cause with no learning: ``t0`` = log p_path,0(x) − log p(x) (the t = 0 marginal is the data slightly
    noised when σ_i(0) > 0, GUD's γ̃_denoise) and ``t1`` = ode − log p_path,0(x) (the t = 1 marginal
    N(α(1)μ, α(1)²λ + σ(1)²) against the N(0, I) prior).
    """

    ode: Tensor
    data: Tensor
    endpoint: Tensor
    t0: Tensor
    t1: Tensor


def gaussian_flow_log_likelihood(gaussian: DiagonalGaussian, path: DiagonalPath, x: Tensor) -> ExactFlow:
    """What the probability-flow ODE (GUD eq. 25) returns for Gaussian data with the exact score (closed form).

    In χ coordinates the data are independent N(μ_i, λ_i) (μ = m/s, λ = v/s², the gaussian's moments over
    the path's scale s), and the path's marginal at t is N(α_i μ_i, V_i(t)) with V_i = α_i² λ_i + σ_i².
    The exact flow of that marginal keeps (χ_i − α_i μ_i)/√V_i fixed, so from χ_0 it reaches
    χ_1 = α_i(1) μ_i + √(V_i(1)/V_i(0)) (χ_0 − α_i(0) μ_i) and its divergence integrates to
    ½ Σ_i log(V_i(1)/V_i(0)). Hence

        ode = log N(χ_1; 0, I) + ½ Σ_i log(V_i(1)/V_i(0)) − log|det US|,

    which equals log N(χ_0; α(0)μ, V(0)) − log|det US| (the t = 0 marginal) exactly when the t = 1 marginal
    is the prior. Everything is float64.

    Parameters
    ----------
    gaussian : DiagonalGaussian
        Diagonal in the path's basis (e.g. :class:`gdmkit.oracles.GaussianRandomField` with a Fourier path).
    path : DiagonalPath
    x : Tensor, shape (B, *event_shape)
        Data-space points.
    """
    gaussian.denoiser(path)  # checks that the gaussian is diagonal in the path's basis
    if tuple(x.shape[1:]) != gaussian.event_shape:
        raise ValueError(f"x has event shape {tuple(x.shape[1:])}, the gaussian {gaussian.event_shape}")
    xd = x.double()
    chi0 = path.to_chi(xd)
    s = torch.ones_like(gaussian.var) if path.scale is None else path.scale.double().to(gaussian.var)
    mu, lam = (gaussian.mean / s).to(chi0), (gaussian.var / s.square()).to(chi0)
    ends = {}
    for t, side in ((0.0, "right"), (1.0, "left")):
        m = path.schedule.marginal(times_like(t, chi0), side)
        a, sg = m.alpha.double().expand_as(chi0), m.sigma.double().expand_as(chi0)
        ends[t] = (a, a.square() * lam + sg.square())
    (a0, v0), (a1, v1) = ends[0.0], ends[1.0]
    chi1 = a1 * mu + (v1 / v0).sqrt() * (chi0 - a0 * mu)
    log2pi = math.log(2 * math.pi)
    flat = lambda u: u.flatten(1).sum(1)  # noqa: E731
    log_det = path.log_det_to_x()
    ode = flat(-0.5 * (chi1.square() + log2pi) + 0.5 * (v1 / v0).log()) - log_det
    marginal0 = flat(-0.5 * ((chi0 - a0 * mu).square() / v0 + v0.log() + log2pi)) - log_det
    data = gaussian.log_prob(xd)
    return ExactFlow(ode=ode, data=data, endpoint=ode - data, t0=marginal0 - data, t1=ode - marginal0)
