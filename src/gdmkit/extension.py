"""Column-wise sequential generation: image extension and partial reconstruction (GUD §5.2, App. C).

The column schedule (GUD eq. 21, :class:`~gdmkit.schedules.ColumnGamma`) has, for columns i = 1..L,

    γ_i(t) = clip_{γmin,γmax}(γmin + (t − t_i)(γmax − γmin)/(1 − b)),  t_i = b (L − i)/(L − 1),

so with Δt = b/(L − 1) the offsets satisfy t_{i−k} = t_i + kΔt and therefore (exactly, clip included)

    γ_i(t − kΔt) = γ_{i−k}(t)                                                           (shift identity)

Column i is frozen clean (γ = γmin) while t ≤ t_i, active on (t_i, t_i + 1 − b) and at γmax from
t_i + 1 − b on. **Image extension** (App. C): from a window at time t, integrate the reverse process to
t − kΔt, cut off the k leftmost columns, append k columns of prior noise on the right; by the shift
identity the k + 1..L columns are then in the state columns 1..L − k had at t. The window is back in
the noising state at t **only if** (derived here, checked by :func:`plan_extension`):

(a) the emitted columns 1..k are finished: γ_k(t − kΔt) = γmin  ⇔  t ≤ t_k + kΔt = LΔt;
(b) the appended columns L − k + 1..L are at γmax at t (prior noise is their law there, up to the
    α²(γmax) = sigmoid(−γmax) signal fraction): t ≥ t_{L−k+1} + 1 − b = 1 − b + (k − 1)Δt;
(c) 1 ≤ k ≤ L − 1 and 0 ≤ t − kΔt, t ≤ 1.

(a) and (b) admit a t iff 1 − b + (k − 1)Δt ≤ LΔt, i.e.

    b ≥ (L − 1)/(2L − k)   ⇔   k ≤ 2L − (L − 1)/b   ⇔   (1 − b)/Δt + k ≤ L + 1:

the active band, (1 − b)(L − 1)/b columns wide, plus the k columns moved per shift must fit into the
window. Then (c) holds automatically.

**Joins.** A restored window still forgets the columns it cut. If its first column is still active at t
(γ_1(t) > γmin, i.e. t > t_1 = b), that column is finished without its left neighbours: a seam at every
join. It is frozen at the cut iff (d) t ≤ b, which with (b) needs b ≥ (L − 1)/(2L − k − 1) (slightly more
than restoration). :func:`plan_extension` therefore picks the smallest admissible t, t_lo, and reports
``gap_first`` = γ_1(t) − γmin (0: no join artefact from the cut; measured by
:func:`gdmkit.stationarity.seam_statistic`). For L = 32 and the paper's k = 9 restoration needs
b ≥ 31/55 ≈ 0.564 and a frozen first column b ≥ 31/54 ≈ 0.574; the paper's b = 0.5 (its Fig. 7 strips use
b = 0.5, k = 9) meets neither, by a small margin (:func:`plan_extension` refuses it and says why). For
b < (L − 1)/(2L − 1) (≈ 0.48 at L = 16) no k works.

The procedure also needs translation-invariant data (App. C) and a window wide enough for the
columns that leave it to be (nearly) irrelevant to the new ones: both are measured, not assumed
(:mod:`gdmkit.stationarity`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from . import sampling
from .bases import Pixel
from .paths import DiagonalPath
from .schedules import ColumnGamma
from .tensors import randn, times_like

__all__ = ["delta_t", "min_softness", "max_shift", "feasible_times", "ExtensionPlan", "plan_extension",
           "column_regions", "column_curves", "time_grid_between", "Extension", "extend", "noise_to",
           "reconstruct",
           "kept_columns", "psnr", "seed_diversity", "FROZEN", "ACTIVE", "PENDING"]

FROZEN, ACTIVE, PENDING = 0, 1, 2  # column regions of GUD Fig. 7 (right): yellow, green, blue
TIME_TOL = 1e-9  # times closer than this to a bound count as on it (a γ error below 1e-7 at b ≤ 0.99)


def _check_bLk(b: float, L: int, k: int | None = None) -> None:
    if not (isinstance(L, int) and L >= 2):
        raise ValueError(f"the window needs L >= 2 columns, got L = {L!r}")
    if not (math.isfinite(b) and 0.0 < b < 1.0):
        raise ValueError(f"extension needs a column schedule with 0 < b < 1, got b = {b!r} (b = 0 is "
                         "standard diffusion: every column at one noise level, nothing to shift)")
    if k is not None and not (isinstance(k, int) and 1 <= k <= L - 1):
        raise ValueError(f"the shift k must be an integer with 1 <= k <= L - 1 = {L - 1}, got {k!r}")


def delta_t(b: float, L: int) -> float:
    """Δt = b/(L − 1): the time in which the noising front moves by one column (GUD App. C)."""
    _check_bLk(b, L)
    return b / (L - 1)


def min_softness(L: int, k: int, seam_free: bool = False) -> float:
    """The smallest b for which shifting by k columns restores the state: (L − 1)/(2L − k); with
    ``seam_free`` also with the window's first column frozen at the cut (d): (L − 1)/(2L − k − 1)."""
    _check_bLk(0.5, L, k)
    return (L - 1) / (2 * L - k - (1 if seam_free else 0))


def max_shift(b: float, L: int) -> int:
    """The largest k (0 if none) with b ≥ (L − 1)/(2L − k), decided in exact rational arithmetic."""
    _check_bLk(b, L)
    bq = Fraction(b)
    ok = [k for k in range(1, L) if bq * (2 * L - k) >= L - 1 - Fraction(TIME_TOL)]
    return max(ok, default=0)


def feasible_times(b: float, L: int, k: int) -> tuple[float, float]:
    """(t_lo, t_hi) = (1 − b + (k − 1)Δt, LΔt): condition (b) and (a) of the module docstring.

    A t restores the state iff t_lo ≤ t ≤ t_hi (the interval is empty, t_lo > t_hi, when
    b < (L − 1)/(2L − k)).
    """
    _check_bLk(b, L, k)
    dt = delta_t(b, L)
    return 1.0 - b + (k - 1) * dt, L * dt


@dataclass(frozen=True)
class ExtensionPlan:
    """One shift of App. C's extension, with what the schedule itself says about it.

    ``gap_appended`` = γmax − min γ_j(t) over the appended columns (0: prior noise is their state);
    ``gap_emitted`` = max γ_i(t − kΔt) − γmin over the emitted columns (0: they are finished);
    ``shift_error`` = max |γ_i(t − kΔt) − γ_{i−k}(t)| over the kept columns (0 by eq. 21);
    ``gap_first`` = γ_1(t) − γmin: how far from finished the window's first column is when the columns
    left of it are cut (0 iff t ≤ b: joins carry no artefact of the cut).
    """

    L: int
    b: float
    k: int
    t: float
    dt: float
    t_lo: float
    t_hi: float
    feasible: bool
    gap_appended: float
    gap_emitted: float
    shift_error: float
    gap_first: float

    @property
    def t_end(self) -> float:
        """t − kΔt, where each shift's integration stops."""
        return self.t - self.k * self.dt


def _column_gamma(schedule: ColumnGamma, t: float) -> Tensor:
    """γ_i(t) per column i = 1..L, float64, shape (L,), from the schedule itself."""
    g = schedule.gamma(torch.tensor([t], dtype=torch.float64))[0][0]
    return g.reshape(-1, g.shape[-1])[0]


def _check_column_schedule(schedule) -> ColumnGamma:
    if not isinstance(schedule, ColumnGamma):
        raise ValueError(f"image extension shifts pixel columns: it needs a ColumnGamma schedule (eq. 21), "
                         f"got {type(schedule).__name__}")
    cols = schedule.column
    if cols.ndim < 1 or not bool((cols == torch.arange(cols.shape[-1]).expand_as(cols)).all()):
        raise ValueError("the schedule's column labels must be the last axis' index (Pixel basis labels)")
    return schedule


def plan_extension(schedule: ColumnGamma, k: int, t: float | None = None, *,
                   strict: bool = True) -> ExtensionPlan:
    """Check (or choose) the time t of a k-column shift under a column schedule (GUD App. C).

    Parameters
    ----------
    schedule : ColumnGamma
        The window's schedule (L columns, softness b).
    k : int
        Columns emitted and appended per shift, 1 ≤ k ≤ L − 1.
    t : float, optional
        The noising time the window returns to. None: t_lo, the smallest admissible t (appended columns
        exactly at γmax, the first column as finished as possible), when [t_lo, t_hi] is non-empty;
        else t_hi clipped to [kΔt, 1] (emitted columns finished, appended ones not fully noised; only
        with ``strict=False``).
    strict : bool
        Raise ValueError, saying why and what would work, when appending prior noise does not restore
        the noising state at t (the conditions of the module docstring). ``strict=False`` returns the
        plan with ``feasible=False`` and the γ gaps, for measuring how extension breaks.
    """
    schedule = _check_column_schedule(schedule)
    b, L = schedule.b, schedule.L
    _check_bLk(b, L, k)
    dt = delta_t(b, L)
    t_lo, t_hi = feasible_times(b, L, k)
    if t is None:
        t = max(t_lo, k * dt) if t_lo <= t_hi + TIME_TOL else min(max(t_hi, k * dt), 1.0)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be a finite time in [0, 1], got {t}")
    ok_time = t <= 1 + TIME_TOL and t - k * dt >= -TIME_TOL
    feasible = ok_time and t_lo - TIME_TOL <= t <= t_hi + TIME_TOL
    g_t, g_end = _column_gamma(schedule, t), _column_gamma(schedule, t - k * dt)
    plan = ExtensionPlan(L, b, k, t, dt, t_lo, t_hi, feasible,
                         gap_appended=float(schedule.gamma_max - g_t[L - k:].min()),
                         gap_emitted=float(g_end[:k].max() - schedule.gamma_min),
                         shift_error=float((g_end[k:] - g_t[:L - k]).abs().max()),
                         gap_first=float(g_t[0] - schedule.gamma_min))
    if strict and not feasible:
        raise ValueError(_refusal(plan, ok_time))
    return plan


def _refusal(p: ExtensionPlan, ok_time: bool) -> str:
    b_min, k_max = min_softness(p.L, p.k), max_shift(p.b, p.L)
    head = (f"image extension with (t, k, b, L) = ({p.t:.4g}, {p.k}, {p.b:.4g}, {p.L}) does not restore "
            f"the noising state at t after appending prior noise: ")
    if not ok_time:
        why = (f"the shift needs 0 <= t - kΔt = {p.t_end:.4g} and t <= 1 (Δt = b/(L-1) = {p.dt:.4g}). ")
    else:
        why = (f"the {p.k} appended columns must be at γ_max at t, i.e. t >= 1 - b + (k-1)Δt = {p.t_lo:.4g} "
               f"(they lack {p.gap_appended:.3g} in γ), and the {p.k} emitted columns must be finished "
               f"at t - kΔt, i.e. t <= LΔt = {p.t_hi:.4g} (they are {p.gap_emitted:.3g} above γ_min). ")
    fix = (f"Both hold for some t iff b >= (L-1)/(2L-k) = {b_min:.4g}. What would work: "
           + (f"t in [{p.t_lo:.4g}, {p.t_hi:.4g}] at this (k, b); " if p.t_lo <= p.t_hi + TIME_TOL else "")
           + (f"k <= {k_max} at b = {p.b:.4g}; " if k_max else
              f"no k at b = {p.b:.4g} (needs b >= (L-1)/(2L-1) = {min_softness(p.L, 1):.4g}); ")
           + f"or b >= {b_min:.4g} at k = {p.k} (a network trained at that b).")
    return head + why + fix


def column_regions(schedule: ColumnGamma, t: float) -> Tensor:
    """Per column, shape (L,): FROZEN (γ = γmin, generated), ACTIVE (β ≠ 0) or PENDING (γ = γmax, yet
    to generate) at time t — GUD Fig. 7 (right). Decided from t against the ramp ends t_i, t_i + 1 − b."""
    schedule = _check_column_schedule(schedule)
    b, L = schedule.b, schedule.L
    i = torch.arange(1, L + 1, dtype=torch.float64)
    t_i = b * (L - i) / (L - 1)
    out = torch.full((L,), ACTIVE, dtype=torch.int64)
    out[t <= t_i + TIME_TOL] = FROZEN
    out[t >= t_i + 1 - b - TIME_TOL] = PENDING
    return out


def column_curves(schedule: ColumnGamma, ts: Tensor):
    """GUD Fig. 6: per column i = 1..L and time t, γ_i(t), the noising rate β_i(t) = σ_i² γ_i′ (eq. 14,
    left derivative) and α_i(t); a DataFrame with columns t, column (1-based), gamma, beta, alpha."""
    import pandas as pd

    schedule = _check_column_schedule(schedule)
    ts = torch.as_tensor(ts, dtype=torch.float64)
    g, _ = schedule.gamma(ts)
    m = schedule.marginal(ts)
    rows = {name: v.expand_as(g).reshape(len(ts), -1, g.shape[-1])[:, 0] for name, v in
            (("gamma", g), ("beta", m.g2), ("alpha", m.alpha))}              # (T, L) each
    L = rows["gamma"].shape[-1]
    return pd.DataFrame({"t": ts.repeat_interleave(L).numpy(),
                         "column": torch.arange(1, L + 1).repeat(len(ts)).numpy(),
                         **{k: v.reshape(-1).double().numpy() for k, v in rows.items()}})


def time_grid_between(schedule, t_from: float, t_to: float, steps: int) -> Tensor:
    """``steps`` uniform steps from t_from to t_to merged with the schedule's kinks strictly between
    them (so no step straddles a kink); float64, shape (N + 1,), monotone, ends exactly t_from, t_to."""
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (math.isfinite(t_from) and math.isfinite(t_to)) or abs(t_from - t_to) <= TIME_TOL:
        raise ValueError(f"need two distinct finite times, got {t_from}, {t_to}")
    lo, hi = min(t_from, t_to), max(t_from, t_to)
    pts = torch.linspace(t_from, t_to, steps + 1, dtype=torch.float64).tolist()[1:-1]
    pts += [p for p in schedule.breakpoints() if lo + TIME_TOL < p < hi - TIME_TOL]
    pts = sorted(set(pts), reverse=t_from > t_to)
    keep = [t_from]
    for p in pts:  # drop points that nearly coincide (a kink next to a uniform point)
        if abs(p - keep[-1]) > TIME_TOL and abs(p - t_to) > TIME_TOL:
            keep.append(p)
    return torch.tensor(keep + [t_to], dtype=torch.float64)


@dataclass(frozen=True)
class Extension:
    """Result of :func:`extend`: ``strip`` (B, C, H, L + n_shifts·k) in data space, the plan, the
    number of model evaluations, and ``windows`` (R, B, C, H, L): the first R windows at time t
    (data space), for GUD Fig. 7 (right)."""

    strip: Tensor
    plan: ExtensionPlan
    nfe: int
    windows: Tensor | None = None


def _check_path(path: DiagonalPath) -> ColumnGamma:
    if not isinstance(path.basis, Pixel):
        raise ValueError(f"extension cuts pixel columns: the path's basis must be Pixel, got "
                         f"{type(path.basis).__name__}")
    if path.scale is not None and not torch.allclose(path.scale, path.scale[..., :1].expand_as(path.scale)):
        raise ValueError("a prior scale that differs between columns cannot be shifted: use scale=None or "
                         "one that is the same in every column")
    return _check_column_schedule(path.schedule)


@torch.no_grad()
def extend(model, path: DiagonalPath, n: int, n_shifts: int, k: int, t: float | None = None, *,
           steps: int = 4,
           start_steps: int = 32, finish_steps: int = 32, solver=sampling.heun,
           generator: torch.Generator | None = None, strict: bool = True, record: int = 0,
           device=None) -> Extension:
    """Extend n windows to strips of L + n_shifts·k columns (GUD App. C).

    Draws a window at t = 1 from the prior, integrates it to t (``start_steps`` steps), then repeats
    ``n_shifts`` times: integrate t → t − kΔt (``steps`` steps), emit the k leftmost columns, append k
    columns of prior noise on the right (back at t, :func:`plan_extension`); finally integrates the
    last window t → 0 (``finish_steps``) and emits it whole. Step grids include the schedule's kinks.

    Parameters
    ----------
    model : callable
        ``model(chi, t, side) -> Prediction`` on windows (B, C, H, L): ``path.denoiser(net)`` or an
        oracle's ``denoiser(path)``.
    path : DiagonalPath
        Pixel basis, :class:`ColumnGamma` schedule.
    n, n_shifts, k : int
        Strips, shifts, columns per shift.
    strict : bool
        Refuse an (t, k, b, L) that does not restore the state (see :func:`plan_extension`).
    generator : torch.Generator, optional
        Draws the prior window and every appended column block, in that order (and the SDE's noise).
    record : int
        Keep the first ``record`` windows at time t.
    """
    schedule = _check_path(path)
    if not (isinstance(n_shifts, int) and n_shifts >= 0) or not (isinstance(n, int) and n >= 1):
        raise ValueError(f"need n >= 1 strips and n_shifts >= 0 shifts, got n = {n!r}, "
                         f"n_shifts = {n_shifts!r}")
    plan = plan_extension(schedule, k, t, strict=strict)
    counter = sampling.CountingModel(model)
    chi = path.prior_sample(n, generator=generator, device=device)              # (B, C, H, L) at t = 1
    if plan.t < 1.0 - TIME_TOL:
        chi = solver(counter, chi, time_grid_between(schedule, 1.0, plan.t, start_steps), generator=generator)
    shift_grid = time_grid_between(schedule, plan.t, plan.t_end, steps) if n_shifts else None
    emitted, windows = [], []
    for _ in range(n_shifts):
        if len(windows) < record:
            windows.append(path.to_x(chi))
        chi = solver(counter, chi, shift_grid, generator=generator)              # now at t − kΔt
        emitted.append(path.to_x(chi)[..., :k])
        fresh = randn((*chi.shape[:-1], k), generator, device=chi.device).to(chi)  # prior columns
        chi = torch.cat([chi[..., k:], fresh], dim=-1)                          # back at t
    if len(windows) < record:
        windows.append(path.to_x(chi))
    if plan.t_end > TIME_TOL or n_shifts == 0:
        chi = solver(counter, chi, time_grid_between(schedule, plan.t, 0.0, finish_steps),
                     generator=generator)
    strip = torch.cat(emitted + [path.to_x(chi)], dim=-1)
    return Extension(strip, plan, counter.nfe, torch.stack(windows) if windows else None)


def noise_to(path: DiagonalPath, x: Tensor, t: float, generator: torch.Generator | None = None) -> Tensor:
    """χ_t = α(t) ⊙ χ + σ(t) ⊙ z̄ (GUD eq. 14) for data x (B, *event_shape); z̄ from ``generator``."""
    chi = path.to_chi(x)
    z = randn(chi.shape, generator, device=chi.device).to(chi)
    return path.noise(chi, times_like(t, chi), z)


@torch.no_grad()
def reconstruct(model, path: DiagonalPath, x: Tensor, t: float, seeds, *, steps: int = 32,
                solver=sampling.heun) -> Tensor:
    """Partial reconstruction (GUD App. C, Fig. 8): noise x to t by the path, regenerate t → 0.

    One reconstruction per seed (the noise z̄ is drawn from ``torch.Generator().manual_seed(seed)``,
    on x's device). Returns shape (S, B, *event_shape) in data space.
    """
    if not 0.0 < t <= 1.0:
        raise ValueError(f"t must lie in (0, 1], got {t}")
    grid = time_grid_between(path.schedule, t, 0.0, steps)
    out = []
    for s in seeds:
        g = torch.Generator(device=x.device).manual_seed(int(s))
        out.append(path.to_x(solver(model, noise_to(path, x, t, g), grid, generator=g)))
    return torch.stack(out)


def kept_columns(schedule: ColumnGamma, t: float, gamma_keep: float | None = None) -> Tensor:
    """Boolean (L,): the columns partial reconstruction keeps at t — frozen clean (γ = γmin, they never
    move) when ``gamma_keep`` is None, else those with γ_i(t) ≤ gamma_keep (nearly clean)."""
    if gamma_keep is None:
        return column_regions(schedule, t) == FROZEN
    return _column_gamma(_check_column_schedule(schedule), t) <= gamma_keep


def psnr(x: Tensor, ref: Tensor, mask: Tensor | None = None, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio 10 log10(range²/MSE) per example, shape (B,), over the columns where
    ``mask`` (L,) is True (all if None); x, ref (B, C, H, L)."""
    if x.shape != ref.shape:
        raise ValueError(f"x {tuple(x.shape)} and ref {tuple(ref.shape)} must have the same shape")
    err = (x - ref).double().square()
    if mask is not None:
        if not bool(mask.any()):
            raise ValueError("the mask selects no column: PSNR over nothing is undefined")
        err = err[..., mask.to(err.device)]
    mse = err.flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def seed_diversity(recons: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-pixel std over seeds, averaged over pixels (where ``mask`` (L,) is True), per example (B,);
    recons (S, B, C, H, L) from :func:`reconstruct`, S >= 2."""
    if recons.ndim != 5 or recons.shape[0] < 2:
        raise ValueError(f"need recons of shape (S >= 2, B, C, H, L), got {tuple(recons.shape)}")
    sd = recons.double().std(0)
    if mask is not None:
        if not bool(mask.any()):
            raise ValueError("the mask selects no column")
        sd = sd[..., mask.to(sd.device)]
    return sd.flatten(1).mean(1)
