"""The schedule interface shared by both families: :class:`Marginal`, :class:`Schedule`, one-sided ramps.

Time runs from t = 0 (data) to t = 1 (noise). Piecewise-linear schedules have kinks; their derivative
at a kink is one-sided: ``side="left"`` gives the derivative on (t − ε, t), ``side="right"`` on
(t, t + ε), decided from t against the exact kink times (:func:`_ramp_active`), never from a rounded
clip argument compared with its bounds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor


class Marginal(NamedTuple):
    """Per-component path coefficients at times t, each broadcastable to (B, *event_shape).

    ``d_log_alpha`` = α′/α and ``g2`` = g(t)², the squared diffusion of the forward SDE
    dχ = (α′/α) χ dt + g dw that has these marginals (g² = 2σσ′ − 2(α′/α)σ²; for VP g² = β = σ²γ′).
    """

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor
    d_log_alpha: Tensor
    g2: Tensor


def _check_side(side: str):
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")


def _ramp_active(t: Tensor, start, end, side: str) -> Tensor:
    """Where a ramp of t that runs on [start, end] has its slope: (start, end] from the left,
    [start, end) from the right, so the derivative at a kink is the one on that side."""
    _check_side(side)
    return (t > start) & (t <= end) if side == "left" else (t >= start) & (t < end)


def _finite(**values) -> None:
    """ValueError for any schedule parameter that is not a finite real number."""
    for name, v in values.items():
        if v is None:
            continue
        try:
            ok = math.isfinite(float(v))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a finite number, got {v!r}; NaN and inf make every γ(t) "
                             "or A(t) NaN: pass a real value")


def _finite_tensor(t: Tensor, name: str) -> None:
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); remove or replace them")


def _leaf(t: Tensor) -> Tensor:
    """A config's copy of a tensor: detached, on the CPU, not aliasing the schedule's buffer."""
    return t.detach().to("cpu", copy=True)


def _check_type(cls: type, cfg: Mapping) -> dict:
    """The config's arguments (without "type"), after checking it describes ``cls``."""
    args = dict(cfg)
    if args.pop("type", None) != cls.__name__:
        raise ValueError(f"{cls.__name__}.from_config got a config of type {cfg.get('type')!r}; "
                         "use gdmkit.config.from_config(cfg), which picks the class")
    return args


class Schedule(torch.nn.Module):
    """Base class: a schedule maps times t, shape (B,), to per-component coefficients.

    Subclasses implement :meth:`marginal`, :meth:`state` (what the network is conditioned on),
    :meth:`summary` (a scalar per example for the time embedding), ``to_config()`` / ``from_config``
    (:mod:`gdmkit.config`) and may override :meth:`breakpoints` and :meth:`time_grid`.
    """

    event_shape: tuple[int, ...]

    #: the ``emb_scale`` that suits :meth:`summary` in a network's sinusoidal time embedding
    #: (``nets.MLP``, ``nets.UNet``, ``nets.make_net``): 1000 for a summary in [0, 1] such as t (DDPM's
    #: step range); :class:`~gdmkit.schedules.GammaSchedule` overrides it
    summary_scale: float = 1000.0

    def marginal(self, t: Tensor, side: str = "left") -> Marginal:
        raise NotImplementedError

    def state(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def summary(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def breakpoints(self) -> list[float]:
        """Times in (0, 1) where the derivatives jump (none for smooth schedules)."""
        return []

    def time_grid(self, steps: int) -> Tensor:
        """Decreasing grid from 1 to 0 with ``steps`` uniform steps."""
        return uniform_grid(steps)


def uniform_grid(steps: int) -> Tensor:
    """t_0 = 1 > t_1 > ... > t_steps = 0, uniform, float64 then float32."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1)
