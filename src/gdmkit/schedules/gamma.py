"""GUD: variance-preserving paths driven by the noising state γ(t) (GUD eq. 13–22).

α_i² = sigmoid(−γ_i), σ_i² = sigmoid(γ_i) (eq. 14, 17) with γ(t) linear with ordering variables and
softness (eq. 18–20, :class:`LinearGamma`), column-wise (eq. 21, :class:`ColumnGamma`), Haar ⊗ column
(eq. 22, :class:`HaarColumnGamma`), or GDM groups on a VP path (:class:`GroupwiseGamma`).

The clipped schedules are piecewise linear in t: component i ramps on [start_i, end_i] and is frozen
outside. Their one-sided γ′ is decided from t against those kink times, computed exactly (rational
arithmetic on the float parameters) and rounded once to float64 (:func:`_ramp_table`), and
:meth:`breakpoints` lists exactly them. The γ values themselves are the float formulas of eq. 21–22.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import torch
from torch import Tensor

from .. import config, tensors
from ..groupings import Grouping
from .core import Marginal, Schedule, _check_type, _finite, _finite_tensor, _leaf, _ramp_active
from .groupwise import GroupwiseSchedule


def time_reparam(t: Tensor, power: float | None, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """s(t) = t^α / (t^α + (1 − t)^α) and s′(t) (GUD App. B); identity when ``power`` is None.

    s′(t) = α t^{α−1} (1−t)^{α−1} / (t^α + (1−t)^α)², evaluated at t clamped to [eps, 1 − eps] because
    it diverges at the ends for α < 1 (s itself is exact everywhere).
    """
    if power is None:
        return t, torch.ones_like(t)
    _finite(power=power)
    if power <= 0:
        raise ValueError(f"the reparametrisation power α must be > 0, got {power}")
    tt = t.clamp(0.0, 1.0)
    s = tt ** power / (tt ** power + (1 - tt) ** power)
    tc = t.clamp(eps, 1 - eps)
    a, b = tc ** power, (1 - tc) ** power
    ds = power * tc ** (power - 1) * (1 - tc) ** (power - 1) / (a + b) ** 2
    return s, ds


KINK_TOL = 1e-12  # ramp ends closer than this are treated as one kink


def _ramp_table(ramps: dict[tuple[int, ...], tuple[Fraction, Fraction]], keys: Tensor) -> tuple[
        Tensor, Tensor, list[float]]:
    """Each component's ramp [start, end] in float64 from exact per-label kink times, and the kinks.

    ``ramps`` maps a label tuple to its exact (rational) ramp ends, each rounded once to the nearest
    float64. Ends that still differ by less than ``KINK_TOL`` (e.g. 1 − b and b/9 for b = 0.9, equal
    for the decimal b but not for its binary value) are merged onto the smaller one, so those
    components switch slope at the same t and no interval between kinks is shorter than KINK_TOL.
    ``keys``, shape (*event_shape, m), holds each component's label tuple (a key of ``ramps``).
    Returns (start, end, sorted distinct kink times in (0, 1)).
    """
    shape = keys.shape[:-1]
    keys = keys.reshape(-1, keys.shape[-1])
    labels, rows = torch.unique(keys, dim=0, return_inverse=True)  # the distinct label tuples
    table = [ramps[tuple(k)] for k in labels.tolist()]
    table = torch.tensor([[float(lo), float(hi)] for lo, hi in table], dtype=torch.float64)
    pts, inverse = torch.unique(table, return_inverse=True)  # sorted
    first = torch.ones_like(pts, dtype=torch.bool)
    first[1:] = (pts[1:] - pts[:-1]) > KINK_TOL
    table = pts[first][torch.cumsum(first.long(), 0) - 1][inverse]
    start, end = (table[rows, c].reshape(shape) for c in (0, 1))
    kinks = [p for p in pts[first].tolist() if 0.0 < p < 1.0]
    return start, end, kinks


def _labels(v: Tensor, name: str) -> Tensor:
    """Integer labels >= 0 as int64, refusing fractional or negative ones (never truncating)."""
    v = torch.as_tensor(v)
    if v.is_floating_point() and bool((~torch.isfinite(v) | (v != v.round())).any()):
        raise ValueError(f"{name} labels must be whole numbers, got non-integer values; pass a basis' "
                         f"labels()[{name!r}]")
    v = v.to(torch.int64)
    if v.numel() == 0 or int(v.min()) < 0:
        raise ValueError(f"{name} labels must be non-empty and >= 0; pass a basis' labels()[{name!r}]")
    return v


def _gamma_range(gamma_min: float, gamma_max: float) -> None:
    _finite(gamma_min=gamma_min, gamma_max=gamma_max)
    if gamma_max <= gamma_min:
        raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")


class GammaSchedule(Schedule):
    """VP path from a noising state γ(t) (GUD eq. 13–17): α² = sigmoid(−γ), σ² = sigmoid(γ).

    Subclasses implement :meth:`gamma` returning (γ, γ′), each (B, *event_shape). Then
    α′ = −½ α σ² γ′, σ′ = ½ σ α² γ′, α′/α = −½ σ² γ′ and β = g² = σ² γ′ (eq. 14). A schedule whose
    γ_i depends on t and its own component i alone implements ``_gamma_b(tb, side)`` instead, on times
    tb that broadcast against event_shape: then :meth:`gamma` views (B,) times as (B, 1, ..., 1) and
    :meth:`gamma_diagonal` evaluates every component at its own time in one pass.

    ``summary_scale`` is 1: GUD App. B starts NCSN++'s positional embedding from the time proxy
    (1/d) Σ_i γ_i instead of t and states no rescaling. The proxy spans γ̃_noise − γ̃_denoise +
    a (l_max − l_min), 10 or more, so the scale of 1000 that suits t in [0, 1] would make the embedding,
    and with it the network's output, oscillate in t (phases up to ~10⁴ radians). An adaptive likelihood
    solve at rtol = 1e-5 then took 572 network evaluations instead of 86, at the same held-out loss (the
    laptop U-Net on the ``likelihood`` benchmark's 16×16 field, 300 training steps; 440 against 86 after
    1200).
    """

    summary_scale: float = 1.0

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        if type(self)._gamma_b is GammaSchedule._gamma_b:
            raise NotImplementedError(f"{type(self).__name__} implements neither gamma nor _gamma_b")
        return self._gamma_b(tensors.bcast(t, len(self.event_shape)), side)

    def _gamma_b(self, tb: Tensor, side: str) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def gamma_diagonal(self, t: Tensor, chunk: int = 1024) -> Tensor:
        """γ_i(t_i): each component at its own time, t of shape event_shape; returns event_shape.

        One elementwise pass where the schedule has ``_gamma_b``; otherwise the diagonal of
        :meth:`gamma` on the d times, ``chunk`` times at once (d² work).
        """
        shape = tuple(self.event_shape)
        if tuple(t.shape) != shape:
            raise ValueError(f"gamma_diagonal needs one time per component, shape {shape}, got {tuple(t.shape)}")
        if type(self)._gamma_b is not GammaSchedule._gamma_b:
            return self._gamma_b(t[None], "left")[0][0]
        flat, d = t.reshape(-1), t.numel()
        rows = torch.arange(d)
        out = [self.gamma(flat[i:i + chunk])[0].reshape(-1, d)[rows[i:i + chunk] - i, rows[i:i + chunk]]
               for i in range(0, d, chunk)]
        return torch.cat(out).reshape(shape)

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

    @classmethod
    def from_config(cls, cfg) -> "GammaSchedule":
        return cls(**_check_type(cls, cfg))


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


@config.register
class LinearGamma(GammaSchedule):
    """Linear soft-conditioning schedule γ_i(t) = γ_min,i + s(t) Δγ (GUD eq. 18–20).

    γ_min,i = γ̃_denoise + log Σ_i + a (l_i − l_max), Δγ = γ̃_noise − γ̃_denoise + a (l_max − l_min) (eq. 20),
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

    ``to_config()`` holds these constructor arguments (γ̃_noise as given, before σ_min raises it).
    """

    def __init__(self, log_var: Tensor, order: Tensor, a: float, gamma_denoise: float = -7.0,
                 gamma_noise: float = 3.0, sigma_min: float | None = None, power: float | None = None):
        super().__init__()
        _finite(a=a, gamma_denoise=gamma_denoise, gamma_noise=gamma_noise, sigma_min=sigma_min, power=power)
        log_var = torch.as_tensor(log_var, dtype=torch.float64)
        order = torch.as_tensor(order, dtype=torch.float64)
        if log_var.shape != order.shape:
            raise ValueError(f"log_var {tuple(log_var.shape)} and order {tuple(order.shape)} must have the "
                             "event shape of the data")
        _finite_tensor(log_var, "log_var")
        _finite_tensor(order, "order")
        if a < 0:
            raise ValueError(f"the inverse softness a must be >= 0, got {a}")
        if power is not None and power <= 0:
            raise ValueError(f"the reparametrisation power α must be > 0, got {power}")
        self.log_var, self.order = log_var.cpu(), order.cpu()  # the constructor arguments, for to_config
        self.sigma_min, self.gamma_noise_given = None if sigma_min is None else float(sigma_min), gamma_noise
        if sigma_min is not None:
            if not 0 < sigma_min < 1:
                raise ValueError(f"sigma_min must lie in (0, 1), got {sigma_min}")
            gamma_noise = max(gamma_noise, math.log(sigma_min**2 / (1 - sigma_min**2)) - float(log_var.min()))
        self.event_shape = tuple(log_var.shape)
        self.a, self.power = float(a), None if power is None else float(power)
        self.gamma_denoise, self.gamma_noise = float(gamma_denoise), float(gamma_noise)
        l_max, l_min = order.max(), order.min()
        self.register_buffer("gamma_min", gamma_denoise + log_var + a * (order - l_max), persistent=False)
        self.delta = float(gamma_noise - gamma_denoise + a * (l_max - l_min))
        if self.delta <= 0:
            raise ValueError(f"Δγ = {self.delta:.3g} <= 0: gamma_noise must exceed gamma_denoise")

    def to_config(self) -> dict:
        return {"type": "LinearGamma", "log_var": _leaf(self.log_var), "order": _leaf(self.order),
                "a": self.a, "gamma_denoise": self.gamma_denoise,
                "gamma_noise": float(self.gamma_noise_given),
                "sigma_min": self.sigma_min, "power": self.power}

    def _gamma_b(self, tb: Tensor, side: str) -> tuple[Tensor, Tensor]:
        s, ds = time_reparam(tb, self.power)
        return self.gamma_min.to(tb) + s * self.delta, (ds * self.delta).expand(-1, *self.event_shape)


@config.register
class ColumnGamma(GammaSchedule):
    """Column-wise soft-sequential schedule (GUD eq. 21), left column generated first.

    γ_i(t) = clip_{γ_min, γ_max}(γ_min + (t − t_i)(γ_max − γ_min)/(1 − b)),  t_i = b (L − i)/(L − 1),
    for columns i = 1..L. Column 1 (leftmost) has the largest offset t_1 = b: it is noised last and
    generated first. b = 0 is standard diffusion; b → 1 is autoregressive over columns. Column i ramps
    on [t_i, t_i + 1 − b]: those are its kinks (:meth:`breakpoints`).

    Parameters
    ----------
    column : Tensor, shape event_shape
        0-based column of each component (a basis' ``labels()["column"]``); i = column + 1.
    b : float in [0, 1)
    gamma_min, gamma_max : float
    """

    def __init__(self, column: Tensor, b: float, gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__()
        _finite(b=b)
        if not 0.0 <= b < 1.0:
            raise ValueError(f"b must lie in [0, 1), got {b}")
        _gamma_range(gamma_min, gamma_max)
        column = _labels(column, "column")
        self.event_shape = tuple(column.shape)
        L = int(column.max()) + 1
        i = column.to(torch.float64) + 1
        offset = b * (L - i) / (L - 1) if L > 1 else torch.zeros_like(i)
        self.column = column.cpu()
        self.b, self.L, self.gamma_min, self.gamma_max = float(b), L, float(gamma_min), float(gamma_max)
        self.register_buffer("t_i", offset, persistent=False)
        bq = Fraction(self.b)  # t_i and t_i + 1 − b, exactly, per column present
        t0 = {c: bq * (L - 1 - c) / (L - 1) if L > 1 else Fraction(0) for c in torch.unique(column).tolist()}
        ramps = {(c,): (t, t + 1 - bq) for c, t in t0.items()}
        start, end, self._breakpoints = _ramp_table(ramps, column[..., None])
        self.register_buffer("t_on", start, persistent=False)    # float64 kink times of each ramp
        self.register_buffer("t_off", end, persistent=False)

    def to_config(self) -> dict:
        return {"type": "ColumnGamma", "column": _leaf(self.column), "b": self.b,
                "gamma_min": self.gamma_min, "gamma_max": self.gamma_max}

    def _gamma_b(self, tb: Tensor, side: str) -> tuple[Tensor, Tensor]:
        slope = (self.gamma_max - self.gamma_min) / (1 - self.b)
        raw = self.gamma_min + (tb - self.t_i.to(tb)) * slope
        active = _ramp_active(tb, self.t_on.to(tb), self.t_off.to(tb), side)
        return raw.clamp(self.gamma_min, self.gamma_max), torch.where(active, slope, 0.0).to(raw)

    def breakpoints(self) -> list[float]:
        """The kinks t_i and t_i + 1 − b of eq. 21 inside (0, 1)."""
        return list(self._breakpoints)


@config.register
class HaarColumnGamma(GammaSchedule):
    """Haar-level ⊗ column schedule (GUD eq. 22).

    Level offsets c_i = a (𝒩 − i)/(𝒩 − 1), column offsets c_ij = b (L_i − j)/(L_i − 1),
    t_i = clip_{0,1}((t − c_i)/(1 − a)) and
    γ_ij(t) = clip_{γ_min,γ_max}(γ_min + (γ_max − γ_min)(t_i − c_ij)/(1 − b)).

    Levels are numbered i = 1..𝒩 in generation order: i = 1 is the coarsest (LL^(𝒩) with HF^(𝒩)), which
    gets the largest offset and is generated first; i = 𝒩 + 1 − n for the Haar basis' ``level`` label n.

    Deviation from the printed formula: the paper writes t_i = clip(t − c_i/(1 − a)); with a ≥ 0.5 that
    keeps level i = 1 at γ_min for every t ∈ [0, 1] (never noised), contradicting GUD Fig. 4(d). We use
    (t − c_i)/(1 − a), the level analogue of eq. 21's (t − t_i)/(1 − b): each level is active on
    [c_i, c_i + 1 − a] and every component reaches γ_max at t = 1.

    Since 0 ≤ c_ij ≤ b, component ij ramps exactly while c_ij < t_i < c_ij + 1 − b, i.e. on
    [c_i + (1 − a) c_ij, c_i + (1 − a)(c_ij + 1 − b)] with slope (γ_max − γ_min)/((1 − a)(1 − b)):
    those are its kinks (:meth:`breakpoints`).

    Parameters
    ----------
    level : Tensor, shape event_shape
        The Haar basis' ``labels()["level"]`` (1 = finest).
    column : Tensor, shape event_shape
        The Haar basis' ``labels()["column"]`` (0-based within each sub-band).
    a, b : float in [0, 1)
    gamma_min, gamma_max : float
    """

    def __init__(self, level: Tensor, column: Tensor, a: float, b: float,
                 gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__()
        _finite(a=a, b=b)
        for name, v in (("a", a), ("b", b)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        _gamma_range(gamma_min, gamma_max)
        level, column = torch.as_tensor(level), torch.as_tensor(column)
        if level.shape != column.shape:
            raise ValueError("level and column labels must have the same (event) shape")
        level, column = _labels(level, "level"), _labels(column, "column")
        if int(level.min()) < 1:
            raise ValueError("level labels start at 1 (the finest level); pass Haar(...).labels()['level']")
        self.event_shape = tuple(level.shape)
        n_levels = int(level.max())
        i = (n_levels + 1 - level).to(torch.float64)
        c_i = a * (n_levels - i) / (n_levels - 1) if n_levels > 1 else torch.zeros_like(i)
        c_ij = torch.zeros_like(i)
        for lev in range(1, n_levels + 1):
            m = level == lev
            if not bool(m.any()):
                continue
            L = int(column[m].max()) + 1
            if L > 1:
                c_ij[m] = b * (L - 1 - column[m].double()) / (L - 1)
        self.level, self.column = level.cpu(), column.cpu()
        self.a, self.b = float(a), float(b)
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)
        self.register_buffer("c_i", c_i, persistent=False)
        self.register_buffer("c_ij", c_ij, persistent=False)
        start, end, self._breakpoints = _ramp_table(_haar_ramps(level, column, self.a, self.b),
                                                    torch.stack([level, column], dim=-1))
        self.register_buffer("t_on", start, persistent=False)    # float64 kink times of each ramp
        self.register_buffer("t_off", end, persistent=False)

    def to_config(self) -> dict:
        return {"type": "HaarColumnGamma", "level": _leaf(self.level), "column": _leaf(self.column),
                "a": self.a, "b": self.b, "gamma_min": self.gamma_min, "gamma_max": self.gamma_max}

    def _gamma_b(self, tb: Tensor, side: str) -> tuple[Tensor, Tensor]:
        ti = ((tb - self.c_i.to(tb)) / (1 - self.a)).clamp(0.0, 1.0)
        slope = (self.gamma_max - self.gamma_min) / (1 - self.b)
        raw = self.gamma_min + slope * (ti - self.c_ij.to(tb))
        active = _ramp_active(tb, self.t_on.to(tb), self.t_off.to(tb), side)
        dg = torch.where(active, slope / (1 - self.a), 0.0).to(raw)
        return raw.clamp(self.gamma_min, self.gamma_max), dg

    def breakpoints(self) -> list[float]:
        """Kinks of eq. 22: t = c_i + (1 − a) c_ij (leaves γ_min) and t = c_i + (1 − a)(c_ij + 1 − b)
        (reaches γ_max), for every level i and column j, inside (0, 1)."""
        return list(self._breakpoints)


def _haar_ramps(level: Tensor, column: Tensor, a: float, b: float, printed: bool = False) -> dict:
    """Exact ramp ends of eq. 22 per (level n, column): c_i + (1 − a) c_ij and c_i + (1 − a)(c_ij + 1 − b)
    (the corrected clock); ``printed``: c_i/(1 − a) + c_ij and that + 1 − b (the printed clock)."""
    aq, bq, n_levels = Fraction(a), Fraction(b), int(level.max())
    ramps = {}
    for n in torch.unique(level).tolist():
        i = n_levels + 1 - n
        c_i = aq * (n_levels - i) / (n_levels - 1) if n_levels > 1 else Fraction(0)
        L = int(column[level == n].max()) + 1
        for col in torch.unique(column[level == n]).tolist():
            c_ij = bq * (L - 1 - col) / (L - 1) if L > 1 else Fraction(0)
            if printed:
                ramps[(n, col)] = (c_i / (1 - aq) + c_ij, c_i / (1 - aq) + c_ij + 1 - bq)
            else:
                ramps[(n, col)] = (c_i + (1 - aq) * c_ij, c_i + (1 - aq) * (c_ij + 1 - bq))
    return ramps


def crossing_times(schedule: GammaSchedule, gamma_star: Tensor | float, *, iters: int = 64,
                   chunk: int = 1024) -> Tensor:
    """When each component's noising state reaches a level: t*_i = inf{t ∈ [0, 1] : γ_i(t) ≥ γ*_i}.

    By bisection on t per component (γ_i(t) must be non-decreasing, as in every GUD schedule: eq. 18–22),
    ``iters`` halvings (64: float64 resolution). NaN where γ_i(1) < γ*_i (never reached on [0, 1]).

    Parameters
    ----------
    schedule : GammaSchedule
    gamma_star : Tensor broadcastable to event_shape, or float
        The level γ*_i per component.

    Returns
    -------
    Tensor, shape event_shape, float64
    """
    if not isinstance(schedule, GammaSchedule):
        raise ValueError(f"crossing_times needs a GammaSchedule (γ(t)), got {type(schedule).__name__}")
    shape = tuple(schedule.event_shape)
    g_star = torch.as_tensor(gamma_star, dtype=torch.float64).expand(shape)

    def gamma_at(t: Tensor) -> Tensor:  # γ_i(t_i) for per-component times t (event_shape)
        return schedule.gamma_diagonal(t, chunk).double()

    lo, hi = torch.zeros(shape, dtype=torch.float64), torch.ones(shape, dtype=torch.float64)
    for _ in range(iters):  # invariant: γ(lo) < γ* <= γ(hi) where a crossing exists
        mid = 0.5 * (lo + hi)
        up = gamma_at(mid) >= g_star
        hi, lo = torch.where(up, mid, hi), torch.where(up, lo, mid)
    t = torch.where(gamma_at(torch.zeros(shape, dtype=torch.float64)) >= g_star, 0.0, hi)
    t = torch.where(gamma_at(torch.ones(shape, dtype=torch.float64)) >= g_star, t, float("nan"))
    return t.reshape(shape)


def generation_times(schedule: GammaSchedule, log_var: Tensor | float = 0.0, log_snr: float = 0.0) -> Tensor:
    """When each component is generated: the t at which log SNR_i(t) = log_var_i − γ_i(t) (GUD eq. 16–17)
    falls to ``log_snr`` (0: SNR = 1) on the way to noise; read backwards, the sampler resolves
    component i at that time. Shape event_shape, float64 (NaN: never noised that far, see
    :func:`crossing_times`).

    ``log_var`` is the log-variance of the *diffused* coordinate χ_i = x̄_i / S_i: 0 for GUD's
    variance-matching prior (§4.4), log Σ_i of the data's coefficients for the white prior.
    """
    _finite(log_snr=log_snr)
    return crossing_times(schedule, torch.as_tensor(log_var, dtype=torch.float64) - log_snr)


@config.register
class GroupwiseGamma(GammaSchedule):
    """GDM groups on a VP path: γ_i(t) = γ_min + (γ_max − γ_min)(1 − A_ii(t)) with A(t) of GDM eq. 10.

    Group j is noised from γ_min to γ_max during its interval and frozen outside it, so the groups are
    generated one after another as in GDM, but on GUD's variance-preserving path.
    """

    def __init__(self, grouping: Grouping, intervals: Tensor | None = None,
                 gamma_min: float = -7.0, gamma_max: float = 7.0):
        super().__init__()
        _gamma_range(gamma_min, gamma_max)
        self.groupwise = GroupwiseSchedule(grouping, intervals)
        self.event_shape = self.groupwise.event_shape
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)

    def to_config(self) -> dict:
        return {"type": "GroupwiseGamma", "grouping": self.groupwise.grouping.to_config(),
                "intervals": _leaf(self.groupwise.intervals), "gamma_min": self.gamma_min,
                "gamma_max": self.gamma_max}

    @classmethod
    def from_config(cls, cfg) -> "GroupwiseGamma":
        args = _check_type(cls, cfg)
        return cls(config.from_config(args.pop("grouping")), **args)

    def gamma(self, t: Tensor, side: str = "left") -> tuple[Tensor, Tensor]:
        span = self.gamma_max - self.gamma_min
        return (self.gamma_min + span * (1 - self.groupwise.A(t)), -span * self.groupwise.dA(t, side))

    def breakpoints(self) -> list[float]:
        return self.groupwise.breakpoints()

    def time_grid(self, steps: int | Sequence[int]) -> Tensor:
        return self.groupwise.time_grid(steps)
