"""GDM: rectified flow with a piecewise-linear A(t) per group (GDM eq. 6, 10, 11), and per-batch
schedule samplers over grouping families (GDM App. D)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .. import config, tensors
from ..groupings import Grouping, random_order
from .core import Marginal, Schedule, _check_type, _leaf, _ramp_active, uniform_grid


def uniform_intervals(k: int) -> Tensor:
    """Equal, contiguous intervals; group j (0 = generated first) gets [(k−1−j)/k, (k−j)/k].

    For k = d this is GDM App. C.1's t_start_j = (j−1)/d, t_end_j = j/d (their j counts from the last
    group generated). Returns shape (k, 2) of [t_start, t_end].
    """
    j = torch.arange(k, dtype=torch.float64)
    return torch.stack([(k - 1 - j) / k, (k - j) / k], dim=1)


def gdm_intervals(boundaries: Sequence[float]) -> Tensor:
    """Contiguous intervals from increasing boundaries b_1 < ... < b_{k−1} in (0, 1) (GDM Table 2).

    The group generated last gets [0, b_1], the first-generated group [b_{k−1}, 1]. GDM Table 2's
    "t_end_4, t_end_3, t_end_2 = 0.1, 0.2, 0.5" is ``gdm_intervals([0.1, 0.2, 0.5])``.
    """
    b = [0.0] + [float(x) for x in boundaries] + [1.0]
    if not all(math.isfinite(x) for x in b):
        raise ValueError(f"boundaries must be finite numbers inside (0, 1), got {list(boundaries)}; "
                         "NaN or inf is not a time: give b_1 < ... < b_(k-1)")
    if any(hi <= lo for lo, hi in zip(b, b[1:])):
        raise ValueError(f"boundaries must increase strictly inside (0, 1), got {list(boundaries)}")
    ends = torch.tensor(b, dtype=torch.float64)
    iv = torch.stack([ends[:-1], ends[1:]], dim=1)  # ascending in time: last-generated group first
    return iv.flip(0)


def _check_intervals(intervals: Tensor, k: int) -> Tensor:
    iv = torch.as_tensor(intervals, dtype=torch.float64)
    if iv.shape != (k, 2):
        raise ValueError(f"intervals must have shape (k, 2) = ({k}, 2) for a grouping with k = {k}, "
                         f"got {tuple(iv.shape)}")
    nonfinite = torch.nonzero((~torch.isfinite(iv)).any(1)).flatten()
    if nonfinite.numel():
        raise ValueError(f"intervals of groups {nonfinite.tolist()} are not finite: "
                         f"{iv[nonfinite].tolist()}; give [t_start, t_end] inside [0, 1]")
    bad_range = torch.nonzero((iv < 0).any(1) | (iv > 1).any(1)).flatten()
    if bad_range.numel():
        raise ValueError(f"intervals of groups {bad_range.tolist()} lie outside [0, 1]: "
                         f"{iv[bad_range].tolist()}; time runs from 0 (data) to 1 (noise)")
    rev = torch.nonzero(iv[:, 1] <= iv[:, 0]).flatten()
    if rev.numel():
        raise ValueError(f"intervals of groups {rev.tolist()} are empty or reversed (t_start >= t_end): "
                         f"{iv[rev].tolist()}; give [t_start, t_end] with t_start < t_end")
    return iv


@config.register
class GroupwiseSchedule(Schedule):
    """GDM's per-group A(t) on the rectified-flow path (GDM eq. 6, 10, 11).

    For component i in group j with interval [t_start_j, t_end_j],
    A_ii(t) = 1 for t ≤ t_start_j, (t_end_j − t)/(t_end_j − t_start_j) inside, 0 for t > t_end_j
    (eq. 10), and x̄_t = A(t) x̄ + (I − A(t)) z̄ (eq. 11): α = A, σ = 1 − A.

    Parameters
    ----------
    grouping : Grouping
        Groups in generation order (group 0 generated first).
    intervals : Tensor, shape (k, 2), optional
        [t_start_j, t_end_j] of each group; default :func:`uniform_intervals`. Use different intervals
        for training and generation by building two schedules (GDM Table 2).

    Buffers are kept in float64 and cast per call to t's dtype (``buffer.to(tb)``, a no-op once the
    schedule lives on t's device and dtype): a float64 evaluation sees the exact interval ends and a
    float32 one the rounded ones, consistently with its own t, and CUDA times work with a CPU schedule.
    """

    def __init__(self, grouping: Grouping, intervals: Tensor | None = None):
        super().__init__()
        self.grouping = grouping
        self.event_shape = grouping.event_shape
        iv = uniform_intervals(grouping.k) if intervals is None else _check_intervals(intervals, grouping.k)
        self.intervals = iv
        g = grouping.group
        self.register_buffer("t_start", iv[g, 0], persistent=False)   # float64: exact interval ends
        self.register_buffer("t_end", iv[g, 1], persistent=False)

    def to_config(self) -> dict:
        """``{"type", "grouping": <Grouping config>, "intervals": <(k, 2) float64, as resolved>}``."""
        return {"type": "GroupwiseSchedule", "grouping": self.grouping.to_config(),
                "intervals": _leaf(self.intervals)}

    @classmethod
    def from_config(cls, cfg) -> "GroupwiseSchedule":
        args = _check_type(cls, cfg)
        return cls(config.from_config(args["grouping"]), args["intervals"])

    def A(self, t: Tensor) -> Tensor:
        """Diagonal of A(t), shape (B, *event_shape) (GDM eq. 10)."""
        tb = tensors.bcast(t, len(self.event_shape))
        ts, te = self.t_start.to(tb), self.t_end.to(tb)
        return ((te - tb) / (te - ts)).clamp(0.0, 1.0)

    def dA(self, t: Tensor, side: str = "left") -> Tensor:
        """A′(t): −1/(t_end_j − t_start_j) inside group j's interval, 0 outside (exact)."""
        tb = tensors.bcast(t, len(self.event_shape))
        ts, te = self.t_start.to(tb), self.t_end.to(tb)
        return torch.where(_ramp_active(tb, ts, te, side), -1.0 / (te - ts), torch.zeros_like(tb))

    def marginal(self, t: Tensor, side: str = "left") -> Marginal:
        a, da = self.A(t), self.dA(t, side)
        s = 1.0 - a
        dlog = torch.where(a > 0, da / a.clamp_min(1e-30), torch.zeros_like(a))
        g2 = torch.where(a > 0, -2.0 * da * s / a.clamp_min(1e-30), torch.full_like(a, float("inf")))
        g2 = torch.where(da == 0, torch.zeros_like(a), g2)
        return Marginal(a, s, da, -da, dlog, g2)

    def state(self, t: Tensor) -> Tensor:
        return self.A(t)

    def summary(self, t: Tensor) -> Tensor:
        """1 − mean_i A_ii(t): equals t for k = 1 with the full interval."""
        return 1.0 - self.A(t).flatten(1).mean(1)

    def breakpoints(self) -> list[float]:
        pts = torch.unique(self.intervals.flatten()).tolist()
        return [p for p in pts if 0.0 < p < 1.0]

    def time_grid(self, steps: int | Sequence[int]) -> Tensor:
        """Sampling grid from 1 to 0 (GDM §3.2).

        ``steps`` an int: that many uniform steps. A sequence (N_1, ..., N_k): N_j uniform steps inside
        group j's interval, groups in generation order; any gap between intervals is crossed in one
        step (nothing moves there).
        """
        if isinstance(steps, int):
            return uniform_grid(steps)
        steps = list(steps)
        if len(steps) != self.grouping.k or min(steps) < 1:
            raise ValueError(f"need one step count >= 1 per group (k = {self.grouping.k}), got {steps}")
        pts: list[Tensor] = []
        for j in range(self.grouping.k):
            lo, hi = self.intervals[j].tolist()
            pts.append(torch.linspace(hi, lo, steps[j] + 1, dtype=torch.float64))
        grid = torch.unique(torch.cat(pts + [torch.tensor([0.0, 1.0], dtype=torch.float64)]))
        return grid.flip(0).float()


@config.register
class ScheduleSampler:
    """Per-batch GDM schedules for training one network over a family (GDM App. D, Fig. 5, Fig. 11).

    Each call ``sampler(generator)`` picks one of ``groupings`` uniformly and, with ``shuffle``, puts
    its groups in a random order (order-agnostic training), and returns its :class:`GroupwiseSchedule`
    (``intervals`` default: uniform). Pass it to :meth:`gdmkit.paths.DiagonalPath.loss_fn` as
    ``schedule_sampler``; the network, conditioned on A(t), then serves every member.

    Parameters
    ----------
    groupings : Grouping or sequence of Grouping
        The family, all with one event shape (and, with ``intervals``, one k).
    shuffle : bool
        Draw a random generation order per call (:func:`gdmkit.groupings.random_order`).
    intervals : Tensor, shape (k, 2), optional
        [t_start_j, t_end_j] of each group for every member; default uniform.
    """

    def __init__(self, groupings: Grouping | Sequence[Grouping], shuffle: bool = False,
                 intervals: Tensor | None = None):
        family = [groupings] if isinstance(groupings, Grouping) else list(groupings)
        if not family:
            raise ValueError("schedule_sampler needs at least one grouping")
        shapes = {g.event_shape for g in family}
        if len(shapes) > 1:
            raise ValueError(f"all groupings must share one event shape, got {sorted(shapes)}")
        if intervals is not None:
            intervals = _check_intervals(intervals, family[0].k)
            for g in family[1:]:
                _check_intervals(intervals, g.k)
        self.groupings, self.shuffle, self.intervals = family, bool(shuffle), intervals

    def __call__(self, generator: torch.Generator | None = None) -> GroupwiseSchedule:
        """One family member (uniform) in a random order if ``shuffle``, drawn on the generator's device."""
        g = self.groupings[int(tensors.randint(0, len(self.groupings), (1,), generator))]
        return GroupwiseSchedule(random_order(g, generator) if self.shuffle else g, self.intervals)

    def to_config(self) -> dict:
        """``{"type", "groupings": [Grouping configs], "shuffle": bool, "intervals": Tensor | None}``."""
        return {"type": "ScheduleSampler", "groupings": [g.to_config() for g in self.groupings],
                "shuffle": self.shuffle,
                "intervals": None if self.intervals is None else _leaf(self.intervals)}

    @classmethod
    def from_config(cls, cfg) -> "ScheduleSampler":
        args = _check_type(cls, cfg)
        return cls([config.from_config(g) for g in args["groupings"]], shuffle=args["shuffle"],
                   intervals=args["intervals"])

    def __repr__(self) -> str:
        return (f"ScheduleSampler({len(self.groupings)} groupings of {self.groupings[0].event_shape}, "
                f"shuffle={self.shuffle}, intervals={'uniform' if self.intervals is None else 'given'})")


def schedule_sampler(groupings: Grouping | Sequence[Grouping], *, shuffle: bool = False,
                     intervals: Tensor | None = None) -> ScheduleSampler:
    """A :class:`ScheduleSampler` over ``groupings`` (GDM App. D): ``sampler(generator)`` -> schedule."""
    return ScheduleSampler(groupings, shuffle=shuffle, intervals=intervals)
