"""Component-wise schedules α_i(t), σ_i(t) of a diagonal Gaussian path, with exact derivatives.

Two families share one interface (:class:`Schedule`):

- GDM, rectified flow: α = diag A(t), σ = 1 − α with A(t) piecewise linear per group
  (GDM eq. 6, 10, 11) — :class:`GroupwiseSchedule`.
- GUD, variance preserving: α_i² = sigmoid(−γ_i), σ_i² = sigmoid(γ_i) (GUD eq. 14, 17), with γ(t)
  linear with ordering variables and softness (eq. 18–20, :class:`LinearGamma`), column-wise
  (eq. 21, :class:`ColumnGamma`), Haar ⊗ column (eq. 22, :class:`HaarColumnGamma`), or GDM groups on a
  VP path (:class:`GroupwiseGamma`).

Time runs from t = 0 (data) to t = 1 (noise). Piecewise-linear schedules have kinks; their derivative
at a kink is one-sided: ``side="left"`` gives the derivative on (t − ε, t), ``side="right"`` on
(t, t + ε). An Euler step from t down to t_next uses the left derivative at t; Heun's corrector at
t_next uses the right one (see :mod:`gdmkit.sampling`).

All schedules are ``torch.nn.Module`` s: their tensors are buffers and follow ``.to(device)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .groupings import Grouping, random_order

__all__ = [
    "Marginal", "Schedule", "GroupwiseSchedule", "GammaSchedule", "LinearGamma", "ColumnGamma",
    "HaarColumnGamma", "GroupwiseGamma", "uniform_intervals", "gdm_intervals", "time_reparam",
    "ordering_fourier", "uniform_grid", "schedule_sampler",
]


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


def _bt(t: Tensor, ndim: int) -> Tensor:
    """(B,) times viewed as (B, 1, ..., 1) against ``ndim`` event dimensions."""
    t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t[None]
    return t.reshape(t.shape[0], *([1] * ndim))


def _tb(t: Tensor, ndim: int, ref: Tensor) -> Tensor:
    """Times as (B, 1, ..., 1) in t's floating dtype (float32 for integer t), on t's device.

    Schedule buffers are kept in float64 and cast per call with ``buffer.to(tb)`` (a no-op once the
    schedule lives on t's device and dtype), so a float64 evaluation sees the exact interval ends and a
    float32 one the rounded ones, consistently with its own t, and CUDA times work with a CPU schedule.
    """
    tb = _bt(t, ndim)
    return tb if tb.is_floating_point() else tb.float()


def _check_side(side: str):
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")


def _ramp_active(x: Tensor, lo, hi, side: str) -> Tensor:
    """Where a clipped ramp clip(x, lo, hi) of increasing x has slope one (one-sided at the kinks)."""
    _check_side(side)
    return (x > lo) & (x <= hi) if side == "left" else (x >= lo) & (x < hi)


class Schedule(torch.nn.Module):
    """Base class: a schedule maps times t, shape (B,), to per-component coefficients.

    Subclasses implement :meth:`coefficients`, :meth:`state` (what the network is conditioned on),
    :meth:`summary` (a scalar per example for the time embedding) and may override
    :meth:`breakpoints` and :meth:`time_grid`.
    """

    event_shape: tuple[int, ...]

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


# ----------------------------------------------------------------------------------------------
# GDM: rectified flow with a piecewise-linear A(t) per group
# ----------------------------------------------------------------------------------------------

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
    bad_range = torch.nonzero((iv < 0).any(1) | (iv > 1).any(1)).flatten()
    if bad_range.numel():
        raise ValueError(f"intervals of groups {bad_range.tolist()} lie outside [0, 1]: "
                         f"{iv[bad_range].tolist()}; time runs from 0 (data) to 1 (noise)")
    rev = torch.nonzero(iv[:, 1] <= iv[:, 0]).flatten()
    if rev.numel():
        raise ValueError(f"intervals of groups {rev.tolist()} are empty or reversed (t_start >= t_end): "
                         f"{iv[rev].tolist()}; give [t_start, t_end] with t_start < t_end")
    return iv


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

    def A(self, t: Tensor) -> Tensor:
        """Diagonal of A(t), shape (B, *event_shape) (GDM eq. 10)."""
        tb = _tb(t, len(self.event_shape), self.t_end)
        ts, te = self.t_start.to(tb), self.t_end.to(tb)
        return ((te - tb) / (te - ts)).clamp(0.0, 1.0)

    def dA(self, t: Tensor, side: str = "left") -> Tensor:
        """A′(t): −1/(t_end_j − t_start_j) inside group j's interval, 0 outside (exact)."""
        tb = _tb(t, len(self.event_shape), self.t_end)
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


def schedule_sampler(groupings: Grouping | Sequence[Grouping], *, shuffle: bool = False,
                     intervals: Tensor | None = None):
    """Per-batch GDM schedules for training one network over a family (GDM App. D, Fig. 5, Fig. 11).

    Each call ``sampler(generator)`` picks one of ``groupings`` uniformly and, with ``shuffle``, puts
    its groups in a random order (order-agnostic training), and returns its :class:`GroupwiseSchedule`
    (``intervals`` default: uniform). Pass it to :meth:`gdmkit.paths.DiagonalPath.loss_fn` as
    ``schedule_sampler``; the network, conditioned on A(t), then serves every member.
    """
    family = [groupings] if isinstance(groupings, Grouping) else list(groupings)
    if not family:
        raise ValueError("schedule_sampler needs at least one grouping")
    shapes = {g.event_shape for g in family}
    if len(shapes) > 1:
        raise ValueError(f"all groupings must share one event shape, got {sorted(shapes)}")

    def sampler(generator: torch.Generator | None = None) -> GroupwiseSchedule:
        device = generator.device if generator is not None else "cpu"
        g = family[int(torch.randint(len(family), (1,), generator=generator, device=device))]
        return GroupwiseSchedule(random_order(g, generator) if shuffle else g, intervals)
    return sampler


# ----------------------------------------------------------------------------------------------
# GUD: variance-preserving path driven by the noising state γ(t)
# ----------------------------------------------------------------------------------------------

def time_reparam(t: Tensor, power: float | None, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """s(t) = t^α / (t^α + (1 − t)^α) and s′(t) (GUD App. B); identity when ``power`` is None.

    s′(t) = α t^{α−1} (1−t)^{α−1} / (t^α + (1−t)^α)², evaluated at t clamped to [eps, 1 − eps] because
    it diverges at the ends for α < 1 (s itself is exact everywhere).
    """
    if power is None:
        return t, torch.ones_like(t)
    if power <= 0:
        raise ValueError(f"the reparametrisation power α must be > 0, got {power}")
    tt = t.clamp(0.0, 1.0)
    s = tt ** power / (tt ** power + (1 - tt) ** power)
    tc = t.clamp(eps, 1 - eps)
    a, b = tc ** power, (1 - tc) ** power
    ds = power * tc ** (power - 1) * (1 - tc) ** (power - 1) / (a + b) ** 2
    return s, ds


class GammaSchedule(Schedule):
    """VP path from a noising state γ(t) (GUD eq. 13–17): α² = sigmoid(−γ), σ² = sigmoid(γ).

    Subclasses implement :meth:`gamma` returning (γ, γ′), each (B, *event_shape). Then
    α′ = −½ α σ² γ′, σ′ = ½ σ α² γ′, α′/α = −½ σ² γ′ and β = g² = σ² γ′ (eq. 14).
    """

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def marginal(self, t: Tensor, side: str = "left") -> Marginal:
        g, dg = self.gamma(t, side)
        a2, s2 = torch.sigmoid(-g), torch.sigmoid(g)
        a, s = a2.sqrt(), s2.sqrt()
        return Marginal(a, s, -0.5 * a * s2 * dg, 0.5 * s * a2 * dg, -0.5 * s2 * dg, s2 * dg)

    def state(self, t: Tensor) -> Tensor:
        return self.gamma(t)[0]

    def summary(self, t: Tensor) -> Tensor:
        """(1/d) Σ_i γ_i(t), GUD App. B's time proxy."""
        return self.gamma(t)[0].flatten(1).mean(1)


def ordering_fourier(log_var: Tensor, freq: Tensor, r: float) -> Tensor:
    """GUD §5.1 ordering variables l_i = (1 − r)(−log Σ_i) + r (|k_i| + δ)/κ.

    κ and δ map the range of |k| onto the range of −log Σ, so l has the same range at r = 1 as at r = 0.
    """
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"r must lie in [0, 1], got {r}")
    lv = -log_var
    kappa = (freq.max() - freq.min()) / (lv.max() - lv.min())
    delta = lv.min() * kappa - freq.min()
    return (1 - r) * lv + r * (freq + delta) / kappa


class LinearGamma(GammaSchedule):
    """Linear soft-conditioning schedule γ_i(t) = γ_min,i + s(t) Δγ (GUD eq. 18–20).

    γ_min,i = γ̃_denoise + log Σ_i + a (l_i − l_max),  Δγ = γ̃_noise − γ̃_denoise + a (l_max − l_min) (eq. 20),
    so that min_i log SNR_i(0) = −γ̃_denoise and max_i log SNR_i(1) = −γ̃_noise (eq. 19), with
    log SNR_i = log Σ_i − γ_i (eq. 16–17). At a = 1 and l_i = −log Σ_i every component shares one γ(t):
    standard diffusion (GUD §5.1).

    Parameters
    ----------
    log_var : Tensor, shape event_shape
        log Σ_i, the variance of each diffused coordinate χ_i (zeros for whitened data, GUD §4.4).
    order : Tensor, shape event_shape
        Ordering variables l_i (e.g. −log Σ_i of the unwhitened data, or :func:`ordering_fourier`).
    a : float
        Inverse softness: larger a is more autoregressive.
    gamma_denoise, gamma_noise : float
        γ̃_denoise and γ̃_noise of eq. 19 (GUD App. B uses −7 and 3, or −3 for the Fig. 3 scan).
    sigma_min : float, optional
        If given, γ̃_noise is raised to logit(σ_min²) − min_i log Σ_i so that σ_i(1) ≥ σ_min (GUD §5.1).
    power : float, optional
        Time reparametrisation s(t) of GUD App. B (0.5 gives a cosine-like schedule).
    """

    def __init__(self, log_var: Tensor, order: Tensor, a: float, gamma_denoise: float = -7.0,
                 gamma_noise: float = 3.0, sigma_min: float | None = None, power: float | None = None):
        super().__init__()
        log_var = torch.as_tensor(log_var, dtype=torch.float64)
        order = torch.as_tensor(order, dtype=torch.float64)
        if log_var.shape != order.shape:
            raise ValueError(f"log_var {tuple(log_var.shape)} and order {tuple(order.shape)} must have the "
                             "event shape of the data")
        if a < 0:
            raise ValueError(f"the inverse softness a must be >= 0, got {a}")
        if sigma_min is not None:
            if not 0 < sigma_min < 1:
                raise ValueError(f"sigma_min must lie in (0, 1), got {sigma_min}")
            gamma_noise = max(gamma_noise, math.log(sigma_min**2 / (1 - sigma_min**2)) - float(log_var.min()))
        self.event_shape = tuple(log_var.shape)
        self.a, self.power = float(a), power
        self.gamma_denoise, self.gamma_noise = float(gamma_denoise), float(gamma_noise)
        l_max, l_min = order.max(), order.min()
        self.register_buffer("gamma_min", gamma_denoise + log_var + a * (order - l_max), persistent=False)
        self.delta = float(gamma_noise - gamma_denoise + a * (l_max - l_min))
        if self.delta <= 0:
            raise ValueError(f"Δγ = {self.delta:.3g} <= 0: gamma_noise must exceed gamma_denoise")

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        tb = _tb(t, len(self.event_shape), self.gamma_min)
        s, ds = time_reparam(tb, self.power)
        return self.gamma_min.to(tb) + s * self.delta, (ds * self.delta).expand(-1, *self.event_shape)


class ColumnGamma(GammaSchedule):
    """Column-wise soft-sequential schedule (GUD eq. 21), left column generated first.

    γ_i(t) = clip_{γ_min, γ_max}(γ_min + (t − t_i)(γ_max − γ_min)/(1 − b)),  t_i = b (L − i)/(L − 1),
    for columns i = 1..L. Column 1 (leftmost) has the largest offset t_1 = b: it is noised last and
    generated first. b = 0 is standard diffusion; b → 1 is autoregressive over columns.

    Parameters
    ----------
    column : Tensor, shape event_shape
        0-based column of each component (a basis' ``labels()["column"]``); i = column + 1.
    b : float in [0, 1)
    gamma_min, gamma_max : float
    """

    def __init__(self, column: Tensor, b: float, gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__()
        if not 0.0 <= b < 1.0:
            raise ValueError(f"b must lie in [0, 1), got {b}")
        if gamma_max <= gamma_min:
            raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")
        column = torch.as_tensor(column)
        self.event_shape = tuple(column.shape)
        L = int(column.max()) + 1
        i = column.to(torch.float64) + 1
        offset = b * (L - i) / (L - 1) if L > 1 else torch.zeros_like(i)
        self.b, self.L, self.gamma_min, self.gamma_max = float(b), L, float(gamma_min), float(gamma_max)
        self.register_buffer("t_i", offset, persistent=False)

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        tb = _tb(t, len(self.event_shape), self.t_i)
        slope = (self.gamma_max - self.gamma_min) / (1 - self.b)
        raw = self.gamma_min + (tb - self.t_i.to(tb)) * slope
        active = _ramp_active(raw, self.gamma_min, self.gamma_max, side)
        return raw.clamp(self.gamma_min, self.gamma_max), torch.where(active, slope, 0.0).to(raw)

    def breakpoints(self) -> list[float]:
        starts = torch.unique(self.t_i.double())
        pts = torch.cat([starts, starts + (1 - self.b)])
        return [p for p in torch.unique(pts).tolist() if 0 < p < 1]


class HaarColumnGamma(GammaSchedule):
    """Haar-level ⊗ column schedule (GUD eq. 22).

    Level offsets c_i = a (𝒩 − i)/(𝒩 − 1), column offsets c_ij = b (L_i − j)/(L_i − 1),
    t_i = clip_{0,1}((t − c_i)/(1 − a)) and γ_ij(t) = clip_{γ_min,γ_max}(γ_min + (γ_max − γ_min)(t_i − c_ij)/(1 − b)).

    Levels are numbered i = 1..𝒩 in generation order: i = 1 is the coarsest (LL^(𝒩) with HF^(𝒩)), which
    gets the largest offset and is generated first; i = 𝒩 + 1 − n for the Haar basis' ``level`` label n.

    Deviation from the printed formula: the paper writes t_i = clip(t − c_i/(1 − a)); with a ≥ 0.5 that
    keeps level i = 1 at γ_min for every t ∈ [0, 1] (never noised), contradicting GUD Fig. 4(d). We use
    (t − c_i)/(1 − a), the level analogue of eq. 21's (t − t_i)/(1 − b): each level is active on
    [c_i, c_i + 1 − a] and every component reaches γ_max at t = 1.

    Parameters
    ----------
    level : Tensor, shape event_shape
        The Haar basis' ``labels()["level"]`` (1 = finest).
    column : Tensor, shape event_shape
        The Haar basis' ``labels()["column"]`` (0-based within each sub-band).
    a, b : float in [0, 1)
    """

    def __init__(self, level: Tensor, column: Tensor, a: float, b: float,
                 gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__()
        for name, v in (("a", a), ("b", b)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        if gamma_max <= gamma_min:
            raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")
        level, column = torch.as_tensor(level), torch.as_tensor(column)
        if level.shape != column.shape:
            raise ValueError("level and column labels must have the same (event) shape")
        self.event_shape = tuple(level.shape)
        n_levels = int(level.max())
        i = (n_levels + 1 - level).to(torch.float64)
        c_i = a * (n_levels - i) / (n_levels - 1) if n_levels > 1 else torch.zeros_like(i)
        c_ij = torch.zeros_like(i)
        for lev in range(1, n_levels + 1):
            m = level == lev
            L = int(column[m].max()) + 1
            if L > 1:
                c_ij[m] = b * (L - 1 - column[m].double()) / (L - 1)
        self.a, self.b, self.gamma_min, self.gamma_max = float(a), float(b), float(gamma_min), float(gamma_max)
        self.register_buffer("c_i", c_i, persistent=False)
        self.register_buffer("c_ij", c_ij, persistent=False)

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        tb = _tb(t, len(self.event_shape), self.c_i)
        u = (tb - self.c_i.to(tb)) / (1 - self.a)
        ti = u.clamp(0.0, 1.0)
        slope = (self.gamma_max - self.gamma_min) / (1 - self.b)
        raw = self.gamma_min + slope * (ti - self.c_ij.to(tb))
        active = _ramp_active(u, 0.0, 1.0, side) & _ramp_active(raw, self.gamma_min, self.gamma_max, side)
        dg = torch.where(active, slope / (1 - self.a), 0.0).to(raw)
        return raw.clamp(self.gamma_min, self.gamma_max), dg

    def breakpoints(self) -> list[float]:
        """Kinks of eq. 22: level windows t = c_i, c_i + 1 − a and the clip points of each column,
        t = c_i + (1 − a) c_ij (leaves γ_min) and t = c_i + (1 − a)(c_ij + 1 − b) (reaches γ_max)."""
        ci, cij, span = self.c_i.double(), self.c_ij.double(), 1 - self.a
        pts = torch.cat([ci, ci + span, ci + span * cij, ci + span * (cij + 1 - self.b)]).flatten()
        return [p for p in torch.unique(pts).tolist() if 0 < p < 1]


class GroupwiseGamma(GammaSchedule):
    """GDM groups on a VP path: γ_i(t) = γ_min + (γ_max − γ_min)(1 − A_ii(t)) with A(t) of GDM eq. 10.

    Group j is noised from γ_min to γ_max during its interval and frozen outside it, so the groups are
    generated one after another as in GDM, but on GUD's variance-preserving path.
    """

    def __init__(self, grouping: Grouping, intervals: Tensor | None = None,
                 gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__()
        self.groupwise = GroupwiseSchedule(grouping, intervals)
        self.event_shape = self.groupwise.event_shape
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        span = self.gamma_max - self.gamma_min
        return (self.gamma_min + span * (1 - self.groupwise.A(t)), -span * self.groupwise.dA(t, side))

    def breakpoints(self) -> list[float]:
        return self.groupwise.breakpoints()

    def time_grid(self, steps: int | Sequence[int]) -> Tensor:
        return self.groupwise.time_grid(steps)
