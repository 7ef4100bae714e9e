"""GUD eq. 22 as printed, next to :class:`~gdmkit.schedules.HaarColumnGamma` (the corrected one), and the
softness thresholds at which the Haar ⊗ column schedule becomes hard-cascaded (GUD §5.3, App. B).

The paper prints the level clock as t_i = clip_{0,1}(t − c_i/(1 − a)) with c_i = a (𝒩 − i)/(𝒩 − 1).
For the coarsest level i = 1, c_1 = a, so t_1 = clip(t − a/(1 − a)) = 0 on all of [0, 1] once
a/(1 − a) ≥ 1, i.e. a ≥ ½: that level keeps γ = γ_min (it is never noised, the prior never covers it),
and for a < ½ it stops short of γ_max at t = 1. :class:`PrintedHaarColumnGamma` implements that
formula literally, so notebooks can show what it does (GUD Fig. 4(d) shows every level noised); train
and sample with :class:`HaarColumnGamma`, whose clock (t − c_i)/(1 − a) is the level analogue of
eq. 21 and brings every component from γ_min at t = 0 to γ_max at t = 1.

Under the corrected schedule level i is active on [c_i, c_i + 1 − a] and, inside it, column j on
t_i ∈ [c_ij, c_ij + 1 − b] with c_ij = b (L_i − j)/(L_i − 1). Consecutive levels stop overlapping (hard
cascaded conditioning: a level is fully generated before the next finer one starts) once
a/(𝒩 − 1) ≥ 1 − a, i.e. a ≥ (𝒩 − 1)/𝒩 (:func:`level_cascade_threshold`); consecutive columns of a
level with L columns once b ≥ (L − 1)/L (:func:`column_cascade_threshold`). a = b = 0 gives one γ(t)
for every component: standard diffusion with the white prior.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import config
from .core import _ramp_active
from .gamma import HaarColumnGamma, _haar_ramps, _ramp_table

__all__ = ["PrintedHaarColumnGamma", "level_cascade_threshold", "column_cascade_threshold"]


@config.register
class PrintedHaarColumnGamma(HaarColumnGamma):
    """GUD eq. 22 exactly as printed — for comparison only (see the module docstring).

    γ_ij(t) = clip_{γ_min,γ_max}(γ_min + (γ_max − γ_min)(t_i − c_ij)/(1 − b)) with the printed clock
    t_i = clip_{0,1}(t − c_i/(1 − a)). Since 0 ≤ c_ij ≤ b, component ij ramps on
    [c_i/(1 − a) + c_ij, c_i/(1 − a) + c_ij + 1 − b] with slope (γ_max − γ_min)/(1 − b); ramps that start
    after t = 1 never start. Same arguments, labels and level numbering as :class:`HaarColumnGamma`.
    """

    def __init__(self, level: Tensor, column: Tensor, a: float, b: float,
                 gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__(level, column, a, b, gamma_min, gamma_max)
        start, end, self._breakpoints = _ramp_table(_haar_ramps(self.level, self.column, self.a, self.b, printed=True),
                                                    torch.stack([self.level, self.column], dim=-1))
        self.register_buffer("t_on", start, persistent=False)
        self.register_buffer("t_off", end, persistent=False)

    def to_config(self) -> dict:
        return {**super().to_config(), "type": "PrintedHaarColumnGamma"}

    def _gamma_b(self, tb: Tensor, side: str) -> tuple[Tensor, Tensor]:
        ti = (tb - self.c_i.to(tb) / (1 - self.a)).clamp(0.0, 1.0)  # the printed clock
        slope = (self.gamma_max - self.gamma_min) / (1 - self.b)
        raw = self.gamma_min + slope * (ti - self.c_ij.to(tb))
        active = _ramp_active(tb, self.t_on.to(tb), self.t_off.to(tb), side)
        return raw.clamp(self.gamma_min, self.gamma_max), torch.where(active, slope, 0.0).to(raw)


def level_cascade_threshold(n_levels: int) -> float:
    """The smallest a at which the levels' active windows [c_i, c_i + 1 − a] of :class:`HaarColumnGamma`
    no longer overlap: (𝒩 − 1)/𝒩 (0 for one level). For a ≥ this, level i reaches γ_max before level
    i + 1 leaves γ_min: hard cascaded conditioning across levels (the a → 1 limit of GUD §5.3)."""
    if int(n_levels) != n_levels or n_levels < 1:
        raise ValueError(f"n_levels must be a positive integer (the Haar basis' levels), got {n_levels!r}")
    return (n_levels - 1) / n_levels


def column_cascade_threshold(n_columns: int) -> float:
    """The smallest b at which the column windows [c_ij, c_ij + 1 − b] of one level no longer overlap:
    (L − 1)/L for L columns (GUD eq. 21–22: column j finishes before column j + 1 starts)."""
    if int(n_columns) != n_columns or n_columns < 1:
        raise ValueError(f"n_columns must be a positive integer, got {n_columns!r}")
    return (n_columns - 1) / n_columns
