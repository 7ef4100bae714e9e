"""gdmkit.ode: the embedded RK pairs re-derived from the order conditions, RK45 against SciPy step for
step, knots, and errors."""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from gdmkit import ode

F64 = torch.float64


@lru_cache(maxsize=None)
def _trees(n: int) -> tuple:
    """Rooted trees with n vertices, each a sorted tuple of its children's trees."""
    if n == 1:
        return ((),)
    out = set()

    def forests(m: int, smallest: tuple) -> list:  # multisets of trees with m vertices, non-decreasing
        if m == 0:
            return [()]
        res = []
        for k in range(1, m + 1):
            for t in _trees(k):
                if (k, t) >= smallest:
                    res += [((k, t),) + rest for rest in forests(m - k, (k, t))]
        return res
    for f in forests(n - 1, (0, ())):
        out.add(tuple(sorted(f)))
    return tuple(sorted(out))


def _gamma(tree) -> int:
    """γ(τ) = |τ| Π γ(children) (Butcher), with |τ| the number of vertices."""
    size = 1 + sum(k for k, _ in tree)
    return size * math.prod(_gamma(t) for _, t in tree)


def _phi(tree, a: np.ndarray) -> np.ndarray:
    """The internal elementary weight (per stage): Π over children of (A φ(child))."""
    out = np.ones(a.shape[0])
    for _, t in tree:
        out = out * (a @ _phi(t, a))
    return out


def _matrix(tab: ode.Tableau) -> np.ndarray:
    s = len(tab.c)
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        a[i, :len(row)] = row
    return a


def test_tree_count_is_butchers():
    """1, 1, 2, 4, 9 rooted trees of order 1..5: 17 order conditions for order 5 (Butcher)."""
    assert [len(_trees(n)) for n in range(1, 6)] == [1, 1, 2, 4, 9]
    assert sorted(_gamma(t) for t in _trees(4)) == [4, 8, 12, 24]


@pytest.mark.parametrize("name", sorted(ode.TABLEAUS))
def test_pairs_satisfy_their_order_conditions(name):
    """b satisfies every order condition up to order 5, bᵢφᵢ(τ) = 1/γ(τ); the embedded b̂ = b − e up to
    order 4 and not all of order 5 (so h Σ eᵢkᵢ is a true O(h⁵) error estimate); rows sum to c."""
    tab = ode.TABLEAUS[name]
    a = _matrix(tab)
    b, e = np.array(tab.b), np.array(tab.e)
    assert np.allclose(a.sum(1), tab.c, atol=1e-14)
    for n in range(1, 6):
        for tree in _trees(n):
            assert abs(b @ _phi(tree, a) - 1 / _gamma(tree)) < 1e-13, (name, n, tree)
            if n <= 4:
                assert abs((b - e) @ _phi(tree, a) - 1 / _gamma(tree)) < 1e-13, (name, n, tree)
    residual5 = max(abs((b - e) @ _phi(t, a) - 1 / _gamma(t)) for t in _trees(5))
    assert residual5 > 1e-6
    assert np.allclose(a[-1, :-1], b[:-1]) and b[-1] == 0.0  # FSAL: the last stage is f(t + h, y_new)


def test_dormand_prince_is_the_published_rational_pair():
    """RK45's b and b̂ are Dormand & Prince's rationals (Hairer, Nørsett & Wanner, Table II.5.2)."""
    b = [Fraction(35, 384), 0, Fraction(500, 1113), Fraction(125, 192), Fraction(-2187, 6784), Fraction(11, 84), 0]
    bh = [Fraction(5179, 57600), 0, Fraction(7571, 16695), Fraction(393, 640), Fraction(-92097, 339200),
          Fraction(187, 2100), Fraction(1, 40)]
    assert ode.RK45.b == tuple(float(x) for x in b)
    # to the round-off of one float subtraction
    assert np.allclose(ode.RK45.e, [float(x - y) for x, y in zip(b, bh)], rtol=0, atol=1e-16)


A = np.array([[-1.0, 2.0], [-3.0, -0.5]])


def _f_np(t, y):
    return (A @ y.reshape(2, -1)).ravel() * np.cos(t) + np.sin(3 * t)


def _f_torch(t, y, seg):
    return (torch.from_numpy(A) @ y.reshape(2, -1)).reshape(-1) * math.cos(t) + math.sin(3 * t)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_rk45_is_scipys_rk45_step_for_step(tol):
    """Same pair, norm, controller and starting step as SciPy's RK45: the same evaluations, the same y."""
    y0 = np.array([1.0, 0.5, -0.2, 2.0])
    ref = solve_ivp(_f_np, (0.0, 5.0), y0, method="RK45", rtol=tol, atol=tol)
    st = {}
    y = ode.solve(_f_torch, torch.tensor(y0), 0.0, 5.0, rtol=tol, atol=tol, tableau=ode.RK45, stats=st)
    assert st["nfe"] == ref.nfev
    assert np.abs(y.numpy() - ref.y[:, -1]).max() < 1e-12


@pytest.mark.parametrize("name", sorted(ode.TABLEAUS))
def test_error_shrinks_with_the_tolerance(name):
    """Against a tight DOP853 reference, the global error follows the tolerance down."""
    y0 = np.array([1.0, 0.5, -0.2, 2.0])
    exact = solve_ivp(_f_np, (0.0, 5.0), y0, method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]
    errs = [np.abs(ode.solve(_f_torch, torch.tensor(y0), 0.0, 5.0, rtol=tol, atol=tol,
                             tableau=ode.TABLEAUS[name]).numpy() - exact).max() for tol in (1e-4, 1e-7, 1e-10)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-8 and errs[0] < 1e-2


@pytest.mark.parametrize("name", sorted(ode.TABLEAUS))
def test_knots_are_stepped_onto_and_each_side_is_evaluated(name):
    """dy/dt = 1 before t = 0.3, −2 after: with the knot the answer is exact (each step's field is
    constant), every call sees its own segment, and a step ends on 0.3 and on 1.0."""
    calls = []

    def f(t, y, seg):
        calls.append((t, seg))
        assert (seg == 0 and t <= 0.3) or (seg == 1 and t >= 0.3), (t, seg)
        return torch.full_like(y, 1.0 if seg == 0 else -2.0)
    y = ode.solve(f, torch.zeros(3, dtype=F64), 0.0, 1.0, rtol=1e-6, atol=1e-6, tableau=ode.TABLEAUS[name],
                  knots=[0.3])
    assert torch.allclose(y, torch.full((3,), 0.3 - 2 * 0.7, dtype=F64), rtol=0, atol=1e-14)
    assert (0.3, 0) in calls and (0.3, 1) in calls and max(t for t, _ in calls) == 1.0


def test_bad_input_and_non_finite_fields_are_named():
    y0 = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match="t1 > t0"):
        ode.solve(_f_torch, y0, 1.0, 0.0, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="rtol and atol"):
        ode.solve(_f_torch, y0, 0.0, 1.0, rtol=0.0, atol=1e-4)
    with pytest.raises(FloatingPointError, match="non-finite"):
        ode.solve(lambda t, y, s: y * (float("nan") if t > 0.5 else 1.0), y0, 0.0, 1.0, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="max_steps"):
        ode.solve(lambda t, y, s: -50 * y, y0, 0.0, 1.0, rtol=1e-10, atol=1e-10, max_steps=5)
