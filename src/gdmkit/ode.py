"""Embedded Runge–Kutta pairs with adaptive steps, for the probability-flow ODE (GUD App. B).

GUD App. B integrates its likelihood ODE (eq. 25) with "Tsitouras' 5/4 method as implemented in Kidger
(2021) [diffrax] with adaptive step size and both relative and absolute tolerance of 1e-4". torchdiffeq has
no Tsit5, and its ``dopri5`` estimates the error with Shampine's alternative embedded weights, which accept
larger steps than the standard Dormand–Prince pair at the same tolerance (on the exact Gaussian oracle of
``benchmarks/likelihood_bench.py``: 3.7× the likelihood error of SciPy's RK45 at rtol = atol = 1e-4). This
module carries the two pairs with their published error estimators:

- ``TSIT5``: Tsitouras (2011), "Runge–Kutta pairs of order 5(4) satisfying only the first column
  simplifying assumption", Comput. Math. Appl. 62, Table 1 — the solver of GUD App. B.
- ``RK45``: Dormand & Prince (1980), the 5(4) pair with its standard 4th-order embedded solution
  (Hairer, Nørsett & Wanner, Solving ODEs I, Table II.5.2; SciPy's ``RK45``, Hairer's DOPRI5).

and one controller for both (Hairer, Nørsett & Wanner §II.4, as SciPy and diffrax's default I-controller):
the error norm is the RMS of err / (atol + rtol·max(|y₀|, |y₁|)) over the whole state, a step is kept when
it is below 1, and the next step is h·clip(0.9·norm^(−1/5), 0.2, 10) (no growth right after a rejection).
Every pair is FSAL (its last stage is the derivative at the new point).

Piecewise vector fields: ``knots`` split [t₀, t₁] into segments; a step never straddles a knot (it is
clipped to end on it), the vector field is evaluated afresh on the knot's far side (``f(t, y, segment)``
is told which segment it is in), and the step size carries over. The last step ends on t₁ exactly.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

__all__ = ["Tableau", "TSIT5", "RK45", "TABLEAUS", "solve"]


class Tableau(NamedTuple):
    """An explicit embedded RK pair: nodes ``c`` (s,), rows ``a`` (row i has i entries), weights ``b``
    (s,) of the propagated solution of order ``order``, and ``e`` (s,) = b − b̂, the difference to the
    embedded solution of order ``order − 1`` (so h Σ eᵢ kᵢ estimates the local error)."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    order: int


def _fsal(c, a, b, b_hat, order) -> Tableau:
    """A FSAL pair: the last row of ``a`` is ``b`` (its last stage is f at the new point)."""
    return Tableau(c=tuple(c), a=tuple(tuple(r) for r in a) + (tuple(b[:-1]),), b=tuple(b),
                   e=tuple(x - y for x, y in zip(b, b_hat)), order=order)


# Tsitouras (2011) Table 1, with the embedded weights b̂ of the same table.
_T_B = (0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
        0.01, 0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
        1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
        -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
        2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841, 0.0)
TSIT5 = _fsal(
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604,
       1.0, 1.0),
    a=((), (0.161,),
       (-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
        0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569),
       (2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
        -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
        4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077),
       (5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
        -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
        7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
        -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635),
       (5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
        -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
        8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
        -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
        -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206)),
    b=_T_B,
    b_hat=(0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
           0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
           0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
           1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
           -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
           1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
           1 / 66),
    order=5)

# Dormand & Prince (1980): the 5th-order weights and the standard 4th-order embedded weights.
_D_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
RK45 = _fsal(
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
       (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
       (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656)),
    b=_D_B,
    b_hat=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    order=5)

#: the pairs :func:`solve` knows, by name
TABLEAUS = {"tsit5": TSIT5, "rk45": RK45}

_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


def _rms(z: Tensor) -> float:
    return float(z.square().mean().sqrt())


def _initial_step(f, t0: float, y0: Tensor, f0: Tensor, order: int, rtol: float, atol: float,
                  length: float, seg: int) -> tuple[float, int]:
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, §II.4, p. 169), never longer than the
    segment (the trial point stays inside the path). Returns (h, network evaluations it used)."""
    scale = atol + y0.abs() * rtol
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, length)
    f1 = f(t0 + h0, y0 + h0 * f0, seg)
    d2 = _rms((f1 - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / order)
    return min(100 * h0, h1, length), 1


def solve(f: Callable[[float, Tensor, int], Tensor], y0: Tensor, t0: float, t1: float, *,
          rtol: float, atol: float, tableau: Tableau = TSIT5, knots: Sequence[float] = (),
          first_step: float | None = None, max_steps: int = 100_000, stats: dict | None = None) -> Tensor:
    """y(t₁) of dy/dt = f(t, y, segment) from y(t₀) = y0, by an adaptive embedded RK pair.

    Parameters
    ----------
    f : callable (t: float, y: Tensor, segment: int) -> Tensor
        The vector field; ``segment`` is the index of the interval between ``knots`` that t lies in (at a
        knot, the segment the current step is in: a step's last stage ends on the knot from the left).
    y0 : Tensor, any shape
        The initial state; the error norm is the RMS over all of its elements.
    t0, t1 : float
        The interval, t₀ < t₁.
    rtol, atol : float
        Tolerances, both > 0.
    tableau : Tableau
        ``TSIT5`` (GUD App. B) or ``RK45``.
    knots : sequence of float
        Points in (t₀, t₁) where f may jump or kink.
    first_step : float, optional
        The first step; default Hairer, Nørsett & Wanner's estimate (one extra evaluation).
    stats : dict, optional
        Filled with ``{"nfe", "accepted", "rejected"}``.
    """
    if not t1 > t0:
        raise ValueError(f"solve integrates forwards: need t1 > t0, got t0={t0}, t1={t1}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    bounds = [t0] + sorted({float(k) for k in knots if t0 < k < t1}) + [t1]
    c, a, b, e, order = tableau
    nfe = accepted = rejected = 0
    y, h = y0, first_step
    for seg, (ta, tb) in enumerate(zip(bounds[:-1], bounds[1:])):
        t = ta
        k0 = f(t, y, seg)
        nfe += 1
        if h is None:
            h, n = _initial_step(f, t, y, k0, order, rtol, atol, tb - ta, seg)
            nfe += n
        while t < tb:
            if accepted + rejected >= max_steps:
                raise RuntimeError(f"the ODE solve took more than max_steps={max_steps} steps (at t={t:.6g} of "
                                   f"[{t0}, {t1}]): loosen rtol/atol (now {rtol:g}/{atol:g}) or raise max_steps")
            just_rejected = False
            while True:
                if h <= 1e-12 * (t1 - t0):
                    raise RuntimeError(f"the ODE step size fell to {h:.3g} at t={t:.6g}: the vector field is "
                                       "stiff or not finite there; check the model's output, or loosen rtol/atol")
                ends = h >= tb - t          # this step ends on the segment's end (clipped to it)
                if ends:
                    h = tb - t
                ks = [k0]
                for ci, row in zip(c[1:], a[1:]):
                    yi = y.clone()
                    for aij, kj in zip(row, ks):
                        if aij != 0.0:
                            yi.add_(kj, alpha=h * aij)
                    ks.append(f(tb if ends and ci == 1.0 else t + ci * h, yi, seg))
                nfe += len(c) - 1
                y_new, err = yi, torch.zeros_like(y)   # FSAL: the last stage's point is the new solution
                for ei, ki in zip(e, ks):
                    if ei != 0.0:
                        err.add_(ki, alpha=h * ei)
                norm = _rms(err / (atol + rtol * torch.maximum(y.abs(), y_new.abs())))
                if not math.isfinite(norm):
                    raise FloatingPointError(f"the ODE state became non-finite at t={t:.6g} (step {h:.3g}): the "
                                             "model returned NaN or inf there; check its inputs and weights")
                if norm < 1.0:
                    factor = _MAX_FACTOR if norm == 0.0 else min(_MAX_FACTOR, _SAFETY * norm ** (-1.0 / order))
                    if just_rejected:
                        factor = min(1.0, factor)
                    t = tb if ends else t + h
                    y, k0, h = y_new, ks[-1], h * factor
                    accepted += 1
                    break
                h *= max(_MIN_FACTOR, _SAFETY * norm ** (-1.0 / order))
                just_rejected = True
                rejected += 1
    if stats is not None:
        stats.update(nfe=nfe, accepted=accepted, rejected=rejected)
    return y
