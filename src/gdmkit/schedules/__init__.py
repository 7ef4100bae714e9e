"""Component-wise schedules α_i(t), σ_i(t) of a diagonal Gaussian path, with exact derivatives.

Two families share one interface (:class:`Schedule`):

- GDM, rectified flow: α = diag A(t), σ = 1 − α with A(t) piecewise linear per group
  (GDM eq. 6, 10, 11) — :class:`GroupwiseSchedule` (:mod:`.groupwise`, with :class:`ScheduleSampler`
  for per-batch grouping families, GDM App. D).
- Continuous families drawn per batch (GUD App. B: softness a, b, ordering r): :class:`FamilySampler`
  (:mod:`.families`).
- GUD, variance preserving: α_i² = sigmoid(−γ_i), σ_i² = sigmoid(γ_i) (GUD eq. 14, 17), with γ(t)
  linear with ordering variables and softness (eq. 18–20, :class:`LinearGamma`), column-wise
  (eq. 21, :class:`ColumnGamma`), Haar ⊗ column (eq. 22, :class:`HaarColumnGamma`), or GDM groups on a
  VP path (:class:`GroupwiseGamma`) — :mod:`.gamma`.

Time runs from t = 0 (data) to t = 1 (noise). Piecewise-linear schedules have kinks; their derivative
at a kink is one-sided: ``side="left"`` gives the derivative on (t − ε, t), ``side="right"`` on
(t, t + ε), decided from t against the exact (float64) kink times that :meth:`Schedule.breakpoints`
lists. An Euler step from t down to t_next uses the left derivative at t; Heun's corrector at t_next
uses the right one (see :mod:`gdmkit.sampling`).

All schedules are ``torch.nn.Module`` s: their tensors are buffers and follow ``.to(device)``. Each has
``to_config()`` / ``from_config(cfg)`` (:mod:`gdmkit.config`) holding its constructor arguments.
"""
from __future__ import annotations

from .core import Marginal, Schedule, uniform_grid
from .families import FamilySampler
from .gamma import (ColumnGamma, GammaSchedule, GroupwiseGamma, HaarColumnGamma, LinearGamma,
                    crossing_times, generation_times, ordering_fourier, time_reparam)
from .haar import PrintedHaarColumnGamma, column_cascade_threshold, level_cascade_threshold
from .groupwise import (GroupwiseSchedule, ScheduleSampler, gdm_intervals, schedule_sampler,
                        uniform_intervals)

__all__ = [
    "Marginal", "Schedule", "GroupwiseSchedule", "GammaSchedule", "LinearGamma", "ColumnGamma",
    "HaarColumnGamma", "GroupwiseGamma", "uniform_intervals", "gdm_intervals", "time_reparam",
    "ordering_fourier", "uniform_grid", "schedule_sampler", "ScheduleSampler", "FamilySampler",
    "crossing_times", "generation_times", "PrintedHaarColumnGamma", "level_cascade_threshold",
    "column_cascade_threshold",
]
