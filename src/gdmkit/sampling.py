"""Samplers: plain, stateless functions of (model, χ, grid).

``model(chi, t, side="left") -> Prediction`` is what :meth:`gdmkit.paths.DiagonalPath.denoiser` and the
oracles' ``denoiser`` return. ``ts`` is a 1-D grid of times; decreasing grids (1 → 0) generate,
increasing grids (0 → 1) encode data into latents (the forward ODE, GDM §4.5 image editing).
``callback(i, t, chi, pred)`` sees every step (trajectories, Fig. 1/2-style process plots).

Piecewise-linear schedules (GDM eq. 10, GUD eq. 21–22) have kinks; a step on [t_next, t] must use the
derivative from inside the step, so the start of a step is evaluated with the one-sided derivative
pointing into the step, and Heun's corrector at the end with the other one.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .paths import DiagonalPath, Prediction
from .schedules import Schedule

__all__ = ["euler", "heun", "euler_maruyama", "encode", "generate", "CountingModel", "per_group_steps",
           "trajectory_recorder"]

Callback = Callable[[int, float, Tensor, Prediction], None]


def _sides(t: float, t_next: float) -> tuple[str, str]:
    """(side at step start, side at step end): the derivative looks into the step."""
    return ("left", "right") if t_next < t else ("right", "left")


def _tvec(t: float, chi: Tensor) -> Tensor:
    return torch.full((chi.shape[0],), float(t), device=chi.device, dtype=chi.dtype)


@torch.no_grad()
def euler(model, chi: Tensor, ts: Tensor, callback: Callback | None = None) -> Tensor:
    """Euler on the probability-flow ODE dχ = v dt (GDM eq. 9, 13; GUD eq. 25). NFE = len(ts) − 1.

    Parameters
    ----------
    chi : Tensor, shape (B, *event_shape)
        State at ts[0] in χ coordinates.
    ts : Tensor, shape (N + 1,)
    """
    ts = [float(t) for t in ts]
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        pred = model(chi, _tvec(t, chi), side=_sides(t, t_next)[0])
        if callback is not None:
            callback(i, t, chi, pred)
        chi = chi + (t_next - t) * pred.v
    return chi


@torch.no_grad()
def heun(model, chi: Tensor, ts: Tensor, callback: Callback | None = None) -> Tensor:
    """Heun's second-order method (EDM Alg. 1 without churn) on the probability-flow ODE.

    NFE = 2 (len(ts) − 1).
    """
    ts = [float(t) for t in ts]
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        start, end = _sides(t, t_next)
        pred = model(chi, _tvec(t, chi), side=start)
        if callback is not None:
            callback(i, t, chi, pred)
        chi_e = chi + (t_next - t) * pred.v
        v_next = model(chi_e, _tvec(t_next, chi), side=end).v
        chi = chi + (t_next - t) * 0.5 * (pred.v + v_next)
    return chi


@torch.no_grad()
def euler_maruyama(model, chi: Tensor, ts: Tensor, schedule: Schedule,
                   generator: torch.Generator | None = None, callback: Callback | None = None) -> Tensor:
    """Euler–Maruyama on the reverse SDE (GUD eq. 9), ts decreasing.

    dχ = [f − g² ∇log p_t] dt + g dw̄ with f = (α′/α) χ, ∇log p_t = −ẑ/σ; equivalently the drift is
    v + ½ g² ẑ/σ. No noise is added on the last step (it returns the mean). NFE = len(ts) − 1.
    """
    ts = [float(t) for t in ts]
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise ValueError("euler_maruyama integrates backward in time: ts must decrease strictly")
    n = len(ts) - 1
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        tv = _tvec(t, chi)
        pred = model(chi, tv, side="left")
        c = schedule.marginal(tv, side="left")
        if callback is not None:
            callback(i, t, chi, pred)
        if not bool(torch.isfinite(c.g2).all()):
            raise ValueError(f"the forward SDE of this schedule has infinite diffusion at t = {t:.4g} "
                             "(a rectified-flow GDM path at A = 0 is not an OU process): use an ODE solver "
                             "(euler, heun), or GroupwiseGamma for GDM groups on a VP path")
        g2_over_sigma = torch.where(c.sigma > 0, c.g2 / c.sigma.clamp_min(1e-30), torch.zeros_like(c.g2))
        dt = t_next - t
        chi = chi + dt * (pred.v + 0.5 * g2_over_sigma * pred.z_hat)
        if i < n - 1:
            noise = torch.randn(chi.shape, generator=generator,
                                device=generator.device if generator is not None else chi.device)
            chi = chi + (c.g2.clamp_min(0) * abs(dt)).sqrt() * noise.to(chi)
    return chi


def encode(model, chi0: Tensor, ts: Tensor, solver=euler, callback: Callback | None = None) -> Tensor:
    """Forward ODE from data (t = 0) to latents (t = 1): the inversion used for editing (GDM §4.5).

    ``ts`` may be given decreasing (a sampling grid); it is reversed.
    """
    ts = torch.as_tensor(ts)
    if ts[0] > ts[-1]:
        ts = ts.flip(0)
    return solver(model, chi0, ts, callback=callback)


def generate(path: DiagonalPath, net_or_model, n: int, ts: Tensor, *, solver=euler, generator=None, device=None,
             latents: Tensor | None = None, callback: Callback | None = None,
             batch_size: int | None = None) -> Tensor:
    """Draw χ_1 ~ N(0, I) (or use ``latents``), integrate to t = 0, return data-space samples.

    ``net_or_model`` is a network (wrapped with ``path.denoiser``) or already a model callable.
    ``batch_size`` integrates the latents in chunks (ODE samples do not depend on it). ``latents``
    live in χ coordinates (``path.prior_sample``); ``device`` is where the integration runs.
    """
    model = net_or_model if _is_model(net_or_model) else path.denoiser(net_or_model)
    chi = latents if latents is not None else path.prior_sample(n, generator=generator, device=device)
    if device is not None:
        chi = chi.to(device)
    out = []
    for part in chi.split(batch_size or len(chi)):
        if solver is euler_maruyama:
            part = euler_maruyama(model, part, ts, path.schedule, generator=generator, callback=callback)
        else:
            part = solver(model, part, ts, callback=callback)
        out.append(path.to_x(part))
    return torch.cat(out)


def _is_model(obj) -> bool:
    return not isinstance(obj, torch.nn.Module) and callable(obj)


class CountingModel:
    """Wraps a model and counts its evaluations (number of function evaluations, NFE) in ``nfe``."""

    def __init__(self, model):
        self.model, self.nfe = model, 0

    def __call__(self, chi: Tensor, t: Tensor, side: str = "left") -> Prediction:
        self.nfe += 1
        return self.model(chi, t, side=side)


def per_group_steps(k: int, total: int) -> list[int]:
    """Split ``total`` steps as evenly as possible over k groups (N_j of GDM §3.2), each ≥ 1."""
    if total < k:
        raise ValueError(f"need at least one step per group: total = {total} < k = {k}")
    base, extra = divmod(total, k)
    return [base + (1 if j < extra else 0) for j in range(k)]


def trajectory_recorder(path: DiagonalPath, every: int = 1) -> tuple[Callback, list]:
    """A callback that stores (t, decoded x_t, decoded x̂) every ``every`` steps, and the list it fills."""
    frames: list = []

    def cb(i: int, t: float, chi: Tensor, pred: Prediction) -> None:
        if i % every == 0:
            frames.append((t, path.to_x(chi).cpu(), path.to_x(torch.nan_to_num(pred.x_hat)).cpu()))
    return cb, frames

