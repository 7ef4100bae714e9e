"""Samplers: plain, stateless functions of (model, χ, grid), all with one contract.

    solver(model, chi, ts, *, generator=None, callback=None) -> chi

``model(chi, t, side="left") -> Prediction`` is what :meth:`gdmkit.paths.DiagonalPath.denoiser` and the
oracles' ``denoiser`` return; the Prediction carries χ̂, ẑ, v and, for the SDE, σ and g² (GUD eq. 9).
``ts`` is a 1-D grid of times; decreasing grids (1 → 0) generate, increasing grids (0 → 1) encode data
into latents (the forward ODE, GDM §4.5 image editing). ``generator`` draws the SDE's noise (the ODE
solvers take it and draw nothing). ``callback(i, t, chi, pred)`` is called once per step before the
step is taken: i = step index (0-based), t = the step's start time ts[i] (float), chi = the state at t
(χ coordinates, shape (B, *event_shape)), pred = the model's Prediction there (trajectories, Fig. 1/2
process plots; :func:`trajectory_recorder`).

Piecewise-linear schedules (GDM eq. 10, GUD eq. 21–22) have kinks; a step on [t_next, t] must use the
derivative from inside the step, so the start of a step is evaluated with the one-sided derivative
pointing into the step, and Heun's corrector at the end with the other one.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .bases import Pixel
from .paths import DiagonalPath, Prediction
from .schedules import GroupwiseGamma, GroupwiseSchedule
from .tensors import randn, times_like

__all__ = ["euler", "heun", "euler_maruyama", "encode", "generate", "CountingModel", "per_group_steps",
           "trajectory_recorder", "Frame", "groupwise_freezing", "FreezeCheck"]

Callback = Callable[[int, float, Tensor, Prediction], None]


def _sides(t: float, t_next: float) -> tuple[str, str]:
    """(side at step start, side at step end): the derivative looks into the step."""
    return ("left", "right") if t_next < t else ("right", "left")


def _grid(ts, who: str) -> list[float]:
    """The grid as Python floats (exactly the values given), after checking it is a usable grid."""
    g = torch.as_tensor(ts)
    if g.ndim != 1 or g.numel() < 2:
        raise ValueError(f"{who} needs a 1-D time grid with at least 2 times, got shape {tuple(g.shape)}; "
                         "build one with path.schedule.time_grid(steps)")
    values = [float(t) for t in g]
    if not all(math.isfinite(t) for t in values):
        raise ValueError(f"{who}: the time grid holds non-finite times {values}; times lie in [0, 1]")
    steps = [b - a for a, b in zip(values, values[1:])]
    if not (all(s < 0 for s in steps) or all(s > 0 for s in steps)):
        raise ValueError(f"{who}: the time grid must be strictly monotone (decreasing to generate, "
                         f"increasing to encode), got {values}")
    return values


@torch.no_grad()
def euler(model, chi: Tensor, ts: Tensor, *, generator: torch.Generator | None = None,
          callback: Callback | None = None) -> Tensor:
    """Euler on the probability-flow ODE dχ = v dt (GDM eq. 9, 13; GUD eq. 25). NFE = len(ts) − 1.

    Parameters
    ----------
    chi : Tensor, shape (B, *event_shape)
        State at ts[0] in χ coordinates.
    ts : Tensor, shape (N + 1,)
        Strictly monotone grid.
    generator : unused (the ODE is deterministic); part of the common solver contract.
    """
    ts = _grid(ts, "euler")
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        pred = model(chi, times_like(t, chi), side=_sides(t, t_next)[0])
        if callback is not None:
            callback(i, t, chi, pred)
        chi = chi + (t_next - t) * pred.v
    return chi


@torch.no_grad()
def heun(model, chi: Tensor, ts: Tensor, *, generator: torch.Generator | None = None,
         callback: Callback | None = None) -> Tensor:
    """Heun's second-order method (EDM Alg. 1 without churn) on the probability-flow ODE.

    Same arguments as :func:`euler`. NFE = 2 (len(ts) − 1).
    """
    ts = _grid(ts, "heun")
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        start, end = _sides(t, t_next)
        pred = model(chi, times_like(t, chi), side=start)
        if callback is not None:
            callback(i, t, chi, pred)
        chi_e = chi + (t_next - t) * pred.v
        v_next = model(chi_e, times_like(t_next, chi), side=end).v
        chi = chi + (t_next - t) * 0.5 * (pred.v + v_next)
    return chi


@torch.no_grad()
def euler_maruyama(model, chi: Tensor, ts: Tensor, *, generator: torch.Generator | None = None,
                   callback: Callback | None = None) -> Tensor:
    """Euler–Maruyama on the reverse SDE (GUD eq. 9), ts decreasing.

    dχ = [f − g² ∇log p_t] dt + g dw̄ with f = (α′/α) χ, ∇log p_t = −ẑ/σ; equivalently the drift is
    v + ½ g² ẑ/σ. σ and g² come with the model's Prediction (``pred.sigma``, ``pred.g2``). The noise
    (B, *event_shape) per step is drawn from ``generator``; no noise is added on the last step (it
    returns the mean). NFE = len(ts) − 1.
    """
    ts = _grid(ts, "euler_maruyama")
    if ts[1] > ts[0]:
        raise ValueError("euler_maruyama integrates backward in time: ts must decrease strictly")
    n = len(ts) - 1
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        pred = model(chi, times_like(t, chi), side="left")
        if callback is not None:
            callback(i, t, chi, pred)
        if pred.g2 is None or pred.sigma is None:
            raise ValueError("euler_maruyama needs sigma and g2 in the model's Prediction; build it with "
                             "paths.from_u / from_eps / from_x0 (path.denoiser and the oracles do)")
        if not bool(torch.isfinite(pred.g2).all()):
            raise ValueError(f"the forward SDE of this schedule has infinite diffusion at t = {t:.4g} "
                             "(a rectified-flow GDM path at A = 0 is not an OU process): use an ODE solver "
                             "(euler, heun), or GroupwiseGamma for GDM groups on a VP path")
        g2, sigma = pred.g2, pred.sigma
        g2_over_sigma = torch.where(sigma > 0, g2 / sigma.clamp_min(1e-30), torch.zeros_like(g2))
        dt = t_next - t
        chi = chi + dt * (pred.v + 0.5 * g2_over_sigma * pred.z_hat)
        if i < n - 1:
            noise = randn(chi.shape, generator, device=chi.device)
            chi = chi + (g2.clamp_min(0) * abs(dt)).sqrt() * noise.to(chi)
    return chi


def encode(model, chi0: Tensor, ts: Tensor, solver=euler, callback: Callback | None = None) -> Tensor:
    """Forward ODE from data (t = 0) to latents (t = 1): the inversion used for editing (GDM §4.5).

    ``ts`` may be given decreasing (a sampling grid); it is reversed.
    """
    ts = torch.as_tensor(ts)
    if ts.ndim == 1 and ts.numel() > 1 and ts[0] > ts[-1]:
        ts = ts.flip(0)
    return solver(model, chi0, ts, callback=callback)


def generate(path: DiagonalPath, net_or_model, n: int, ts: Tensor, *, solver=euler, generator=None,
             device=None, latents: Tensor | None = None, callback: Callback | None = None,
             batch_size: int | None = None) -> Tensor:
    """Draw χ_1 ~ N(0, I) (or use ``latents``), integrate to t = 0, return data-space samples.

    ``net_or_model`` is a network (wrapped with ``path.denoiser``) or already a model callable.
    ``ts`` decreases strictly from 1 to 0. ``solver`` is any function with the module's contract; it
    gets ``generator`` (the SDE's noise follows the prior draw). ``batch_size`` integrates the latents
    in chunks (ODE samples do not depend on it). ``latents`` live in χ coordinates
    (``path.prior_sample``), n of them; ``device`` is where the integration runs.

    Returns
    -------
    Tensor, shape (n, *event_shape)
    """
    _check_generate_grid(ts)
    if _positive(n) is None:
        raise ValueError(f"generate needs n >= 1 samples, got n = {n!r}")
    if latents is not None and (latents.ndim < 1 or len(latents) != n):
        raise ValueError(f"n = {n!r} but latents hold {len(latents) if latents.ndim else 0} samples: "
                         "pass n = len(latents)")
    if batch_size is not None and _positive(batch_size) is None:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    model = net_or_model if _is_model(net_or_model) else path.denoiser(net_or_model)
    chi = latents if latents is not None else path.prior_sample(n, generator=generator, device=device)
    if device is not None:
        chi = chi.to(device)
    out = [path.to_x(solver(model, part, ts, generator=generator, callback=callback))
           for part in chi.split(batch_size or len(chi))]
    return torch.cat(out)


def _check_generate_grid(ts) -> None:
    what = ("generate integrates from the prior at t = 1 down to the data at t = 0: it needs a strictly "
            "decreasing 1-D grid with ts[0] = 1 and ts[-1] = 0 (e.g. path.schedule.time_grid(steps)); "
            "sampling.encode is the forward direction (data -> latents), and a solver called directly "
            "integrates a part of the way")
    g = torch.as_tensor(ts)
    if g.ndim != 1 or g.numel() < 2:
        raise ValueError(f"{what}; got a grid of shape {tuple(g.shape)}")
    values = [float(t) for t in g]
    if not all(math.isfinite(t) for t in values):
        raise ValueError(f"{what}; got non-finite times {values}")
    if not all(b < a for a, b in zip(values, values[1:])) or values[0] != 1.0 or values[-1] != 0.0:
        shown = values if len(values) <= 8 else values[:3] + ["..."] + values[-3:]
        raise ValueError(f"{what}; got {shown}")


def _positive(v) -> int | None:
    """``v`` as a positive int (Python or NumPy integer), else None."""
    try:
        i = operator.index(v)
    except TypeError:
        return None
    return None if isinstance(v, bool) or i < 1 else i


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


class Frame(NamedTuple):
    """One recorded step: the time t, the state x_t and the prediction x̂ = E[x | x_t] (CPU tensors,
    shape (B, *event_shape), in data space, or in χ coordinates with ``coords="chi"``)."""

    t: float
    x_t: Tensor
    x_hat: Tensor


def trajectory_recorder(path: DiagonalPath, every: int = 1,
                        coords: str = "x") -> tuple[Callback, list[Frame]]:
    """A callback that stores a :class:`Frame` every ``every`` steps, and the list it fills.

    ``coords="x"`` decodes the states to data space (``path.to_x``, for plots); ``"chi"`` keeps the
    solver's χ coordinates (for bitwise checks in a basis other than pixels). x̂ is NaN-free (NaN → 0).
    """
    if coords not in ("x", "chi"):
        raise ValueError(f"coords must be 'x' (data space) or 'chi' (the path's coordinates), got {coords!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    frames: list[Frame] = []
    out = path.to_x if coords == "x" else (lambda chi: chi)

    def cb(i: int, t: float, chi: Tensor, pred: Prediction) -> None:
        if i % every == 0:
            frames.append(Frame(t, out(chi).cpu(), out(torch.nan_to_num(pred.x_hat)).cpu()))
    return cb, frames


@dataclass(frozen=True)
class FreezeCheck:
    """Result of :func:`groupwise_freezing`: per group j (generation order), bitwise.

    keeps_latent[j]: every recorded state at t ≥ t_end_j equals the latents on group j;
    frozen_after[j]: every recorded state at t ≤ t_start_j equals the final sample on group j;
    n_states: the number of recorded states examined (the final sample not counted).
    """

    keeps_latent: tuple[bool, ...]
    frozen_after: tuple[bool, ...]
    n_states: int

    @property
    def holds(self) -> bool:
        """Every group moved only inside its own interval (GDM eq. 10)."""
        return all(self.keeps_latent) and all(self.frozen_after)


def groupwise_freezing(path_or_schedule, frames: Sequence | Mapping, latents: Tensor,
                       final: Tensor) -> FreezeCheck:
    """Check GDM eq. 10's structure on a recorded trajectory: group j keeps its latent until its
    interval [t_start_j, t_end_j] starts (t ≥ t_end_j) and is frozen once it ends (t ≤ t_start_j).

    Parameters
    ----------
    path_or_schedule : DiagonalPath, GroupwiseSchedule or GroupwiseGamma
        Where the groups and intervals come from. A DiagonalPath must have a :class:`Pixel` basis (a
        group is then a set of pixels, in data space as in χ); for another basis record χ states
        (``trajectory_recorder(path, coords="chi")``) and pass ``path.schedule``.
    frames : list of Frame (or (t, state, ...) tuples), or a mapping {t: state}
        States recorded at the steps' start times (:func:`trajectory_recorder`), each (B, *event_shape).
    latents, final : Tensor, shape (B, *event_shape)
        The state at t = 1 and the sampler's output at t = 0, in the frames' coordinates (for a pixel
        basis without prior scale, the χ latents given to the solver are the data-space latents).

    Times are compared with the interval ends in the states' dtype, as the sampler compared them.
    """
    schedule = _groupwise(path_or_schedule)
    items = list(frames.items()) if isinstance(frames, Mapping) else [(f[0], f[1]) for f in frames]
    if not items:
        raise ValueError("groupwise_freezing got no recorded states: pass the frames that "
                         "trajectory_recorder filled while sampling")
    latents, final = latents.detach().cpu(), final.detach().cpu()
    shape = tuple(latents.shape)
    for what, x in [("final", final)] + [(f"the state at t = {t:.4g}", x) for t, x in items]:
        if tuple(x.shape) != shape:
            raise ValueError(f"{what} has shape {tuple(x.shape)} but the latents {shape}: record the "
                             "same samples in the same coordinates")
    if shape[1:] != tuple(schedule.event_shape):
        raise ValueError(f"states have event shape {shape[1:]}, the schedule {tuple(schedule.event_shape)}: "
                         "pass the schedule the samples were drawn with")
    dtype = items[0][1].dtype
    iv = schedule.intervals.to(dtype)
    times = [float(torch.tensor(float(t), dtype=dtype)) for t, _ in items]
    keeps, frozen = [], []
    for j in range(schedule.grouping.k):
        m = schedule.grouping.mask(j).cpu()
        lo, hi = float(iv[j, 0]), float(iv[j, 1])
        keeps.append(all(torch.equal(x.detach().cpu()[:, m], latents[:, m])
                         for t, (_, x) in zip(times, items) if t >= hi))
        frozen.append(all(torch.equal(x.detach().cpu()[:, m], final[:, m])
                          for t, (_, x) in zip(times, items) if t <= lo))
    return FreezeCheck(tuple(keeps), tuple(frozen), len(items))


def _groupwise(obj) -> GroupwiseSchedule:
    if isinstance(obj, DiagonalPath):
        if not isinstance(obj.basis, Pixel):
            raise ValueError(f"groups of a {type(obj.basis).__name__}-basis path are sets of coefficients, "
                             "not pixels: record χ states (trajectory_recorder(path, coords='chi')), "
                             "keep the solver's χ output and latents, and pass path.schedule")
        obj = obj.schedule
    if isinstance(obj, GroupwiseGamma):
        obj = obj.groupwise
    if not isinstance(obj, GroupwiseSchedule):
        raise ValueError(f"groupwise_freezing needs group intervals (a GroupwiseSchedule or GroupwiseGamma, "
                         f"or a path with one), got {type(obj).__name__}")
    return obj
