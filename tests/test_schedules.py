"""Tests for gdmkit.schedules: GDM's A(t) (eq. 10, App. C.1, Table 2) and GUD's γ(t) (eq. 14–22).

Formulas are re-derived by hand in plain Python floats; derivatives are checked against finite
differences in float64 (central away from kinks, one-sided at kinks).
"""
from __future__ import annotations

import math

import pytest
import torch

from gdmkit import groupings as G
from gdmkit import schedules as S
from gdmkit.bases import Haar

F64 = torch.float64


def _t(*vals) -> torch.Tensor:
    return torch.tensor(vals, dtype=F64)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ------------------------------------------------------------------------------------------------
# GDM: A(t) of eq. 10
# ------------------------------------------------------------------------------------------------

def _A_eq10(t: float, ts: float, te: float) -> float:
    """GDM eq. (10), written as printed: slope 1/(t_start − t_end), offset −t_end/(t_start − t_end)."""
    if t <= ts:
        return 1.0
    if t <= te:
        return t / (ts - te) - te / (ts - te)
    return 0.0


IV3 = S.gdm_intervals([0.2, 0.55])           # group 0: [0.55, 1], group 1: [0.2, 0.55], group 2: [0, 0.2]


def _sched3() -> S.GroupwiseSchedule:
    return S.GroupwiseSchedule(G.per_element((3,)), IV3)


def test_gdm_A_matches_eq_10_by_hand():
    sched = _sched3().double()
    iv = [[float(v) for v in sched.t_start], [float(v) for v in sched.t_end]]
    ts = torch.linspace(0, 1, 101, dtype=F64)
    A = sched.A(ts)
    assert A.shape == (101, 3) and A.dtype == F64
    for b, t in enumerate(ts.tolist()):
        for i in range(3):
            assert A[b, i].item() == pytest.approx(_A_eq10(t, iv[0][i], iv[1][i]), abs=1e-12)


def test_gdm_A_is_one_at_t_start_zero_at_t_end_and_constant_outside():
    sched = _sched3()                                             # default float32 buffers
    for j, (ts, te) in enumerate(IV3.tolist()):
        # the interval ends as the schedule stores them (float32), so the comparison is exact
        assert sched.A(torch.tensor(ts))[0, j].item() == 1.0
        assert sched.A(torch.tensor(te))[0, j].item() == 0.0
        before = torch.linspace(0, ts, 7)
        assert bool((sched.A(before)[:, j] == 1).all())
        assert bool((sched.dA(before[:-1])[:, j] == 0).all())
        if te < 1:
            after = torch.linspace(te, 1, 7)[1:]
            assert bool((sched.A(after)[:, j] == 0).all()) and bool((sched.dA(after)[:, j] == 0).all())
    # A(0) = I and A(1) = 0 (GDM eq. 6)
    assert bool((sched.A(torch.tensor(0.0)) == 1).all()) and bool((sched.A(torch.tensor(1.0)) == 0).all())


def test_gdm_dA_is_the_exact_derivative_away_from_kinks():
    sched = _sched3().double()
    kinks = torch.tensor(sched.breakpoints() + [0.0, 1.0], dtype=F64)
    t = torch.linspace(0.013, 0.987, 41, dtype=F64)
    t = t[(t[:, None] - kinks[None]).abs().min(1).values > 1e-3]
    h = 1e-6
    fd = (sched.A(t + h) - sched.A(t - h)) / (2 * h)
    for side in ("left", "right"):
        torch.testing.assert_close(sched.dA(t, side), fd, atol=1e-7, rtol=1e-7)
    # inside group j's interval the slope is −1/(t_end − t_start)
    assert sched.dA(_t(0.7))[0, 0].item() == pytest.approx(-1 / 0.45, rel=1e-6)


def test_gdm_double_schedule_has_its_kinks_at_its_breakpoints():
    sched = _sched3().double()
    for j, (ts, te) in enumerate(IV3.tolist()):
        assert sched.A(_t(te))[0, j].item() == 0.0
        assert sched.A(_t(ts))[0, j].item() == 1.0


def _one_sided_fd(f, t: float, h: float = 1e-7):
    tt = _t(t)
    return (f(tt) - f(tt - h)) / h, (f(tt + h) - f(tt)) / h


def _stored_kinks(sched: S.GroupwiseSchedule) -> list[float]:
    """The interval ends as the schedule's buffers hold them (float32-rounded)."""
    pts = torch.cat([sched.t_start.double(), sched.t_end.double()]).unique().tolist()
    return [p for p in pts if 0 < p < 1]


def test_gdm_dA_one_sided_at_kinks():
    sched = _sched3().double()
    assert _stored_kinks(sched) == pytest.approx(sched.breakpoints(), abs=1e-7)
    for t in _stored_kinks(sched):
        left_fd, right_fd = _one_sided_fd(sched.A, t)
        torch.testing.assert_close(sched.dA(_t(t), side="left"), left_fd, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sched.dA(_t(t), side="right"), right_fd, atol=1e-5, rtol=1e-5)
    # by hand at t = 0.55 = t_end of group 1 = t_start of group 0
    t = _t(float(sched.t_start[0]))
    assert sched.dA(t, "left")[0].tolist() == pytest.approx([0.0, -1 / 0.35, 0.0], rel=1e-6)
    assert sched.dA(t, "right")[0].tolist() == pytest.approx([-1 / 0.45, 0.0, 0.0], rel=1e-6)
    with pytest.raises(ValueError, match="side must be 'left' or 'right'"):
        sched.dA(t, "up")


@pytest.mark.parametrize("d", [3, 5])
def test_app_c1_eq_20_21_uniform_intervals_k_equals_d(d):
    """GDM App. C.1: t_start_j = (j−1)/d, t_end_j = j/d; at t = l/d, A_jj = 0 (j ≤ l), 1 (j > l) and
    A′_jj = −d (j = l), 0 otherwise. The paper's group j is generated (d − j + 1)-th: our group d − j."""
    iv = S.uniform_intervals(d)
    for g in range(d):
        j = d - g
        assert iv[g].tolist() == pytest.approx([(j - 1) / d, j / d], abs=1e-15)
    sched = S.GroupwiseSchedule(G.per_element((d,)))
    for l in range(1, d + 1):
        t = torch.tensor([l / d])
        A, dA = sched.A(t)[0], sched.dA(t, side="left")[0]
        for g in range(d):
            j = d - g
            assert A[g].item() == (0.0 if j <= l else 1.0)
            assert dA[g].item() == pytest.approx(-d if j == l else 0.0, rel=1e-6)


def test_uniform_intervals_equal_gdm_intervals():
    k = 4
    torch.testing.assert_close(S.uniform_intervals(k), S.gdm_intervals([0.25, 0.5, 0.75]))


def test_gdm_intervals_reproduce_table_2_notation():
    """GDM Table 2: "t_end_4, t_end_3, t_end_2 = 0.1, 0.2, 0.5"; S_1 (our group 0) is generated first,
    so S_4 = [0, 0.1], S_3 = [0.1, 0.2], S_2 = [0.2, 0.5], S_1 = [0.5, 1]."""
    iv = S.gdm_intervals([0.1, 0.2, 0.5])
    assert iv.tolist() == [[0.5, 1.0], [0.2, 0.5], [0.1, 0.2], [0.0, 0.1]]
    t_end = {4: 0.1, 3: 0.2, 2: 0.5}
    for paper_j, te in t_end.items():
        assert iv[paper_j - 1, 1].item() == te
    for bad in ([0.5, 0.2], [0.0, 0.5], [0.5, 1.0], [1.2], [0.3, 0.3]):
        with pytest.raises(ValueError, match="boundaries must increase strictly inside"):
            S.gdm_intervals(bad)


@pytest.mark.parametrize("bad,msg", [
    (torch.tensor([[0.5, 1.2], [0.0, 0.5]]), r"groups \[0\] lie outside \[0, 1\]"),
    (torch.tensor([[0.5, 1.0], [-0.1, 0.5]]), r"groups \[1\] lie outside \[0, 1\]"),
    (torch.tensor([[1.0, 0.5], [0.0, 0.5]]), r"groups \[0\] are empty or reversed"),
    (torch.tensor([[0.5, 0.5], [0.0, 0.5]]), r"groups \[0\] are empty or reversed"),
    (torch.tensor([[0.5, 1.0]]), r"shape \(k, 2\) = \(2, 2\)"),
    (torch.tensor([0.0, 0.5, 1.0]), r"shape \(k, 2\) = \(2, 2\)"),
])
def test_bad_intervals_raise(bad, msg):
    with pytest.raises(ValueError, match=msg):
        S.GroupwiseSchedule(G.cdm((1, 2, 2)), bad)


def test_gdm_time_grid_has_N_j_steps_inside_each_interval():
    sched = _sched3()
    steps = [3, 1, 4]
    grid = sched.time_grid(steps).double()
    assert grid[0].item() == 1.0 and grid[-1].item() == 0.0
    assert bool((grid[1:] < grid[:-1]).all())
    assert len(grid) == sum(steps) + 1                             # contiguous intervals: no extra steps
    for (lo, hi), n in zip(IV3.tolist(), steps):
        inside = grid[(grid >= lo - 1e-7) & (grid <= hi + 1e-7)]
        assert len(inside) == n + 1                               # both ends and N_j − 1 interior points
        torch.testing.assert_close(inside[:-1] - inside[1:], torch.full((n,), (hi - lo) / n, dtype=F64),
                                   atol=1e-6, rtol=0)
    assert torch.equal(sched.time_grid(5), S.uniform_grid(5))
    with pytest.raises(ValueError, match=r"one step count >= 1 per group \(k = 3\)"):
        sched.time_grid([1, 2])
    with pytest.raises(ValueError, match="one step count >= 1 per group"):
        sched.time_grid([1, 0, 2])


def test_gdm_time_grid_crosses_gaps_in_one_step():
    iv = torch.tensor([[0.6, 1.0], [0.0, 0.3]])
    sched = S.GroupwiseSchedule(G.cdm((1, 2, 2)), iv)
    grid = sched.time_grid([2, 3]).double()
    expected = torch.tensor([1.0, 0.8, 0.6, 0.3, 0.2, 0.1, 0.0], dtype=F64)
    torch.testing.assert_close(grid, expected, atol=1e-7, rtol=0)


def test_uniform_grid():
    torch.testing.assert_close(S.uniform_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        S.uniform_grid(0)


def test_gdm_coefficients_rectified_flow():
    """α = A, σ = 1 − A (eq. 11), α′ = A′, σ′ = −A′, α′/α = A′/A and g² = 2σσ′ − 2(α′/α)σ²."""
    sched = _sched3().double()
    t = _t(0.1, 0.3, 0.7, 0.95)
    c = sched.marginal(t)
    A, dA = sched.A(t), sched.dA(t)
    torch.testing.assert_close(c.alpha, A)
    torch.testing.assert_close(c.sigma, 1 - A)
    torch.testing.assert_close(c.d_alpha, dA)
    torch.testing.assert_close(c.d_sigma, -dA)
    pos = A > 0
    torch.testing.assert_close(c.d_log_alpha[pos], (dA / A)[pos])
    g2 = 2 * (1 - A) * (-dA) - 2 * (dA / A) * (1 - A) ** 2
    torch.testing.assert_close(c.g2[pos], g2[pos])
    assert bool((c.g2[~pos] == 0).all())                           # frozen, fully noised groups


def test_gdm_summary_state_and_k1_is_plain_rectified_flow():
    sched = S.GroupwiseSchedule(G.single((2, 2, 2)))
    t = torch.tensor([0.0, 0.25, 0.9])
    torch.testing.assert_close(sched.summary(t), t)
    torch.testing.assert_close(sched.A(t), (1 - t)[:, None, None, None].expand(3, 2, 2, 2))
    torch.testing.assert_close(sched.state(t), sched.A(t))
    assert sched.breakpoints() == []


def test_groupwise_gamma():
    gw = S.GroupwiseGamma(G.per_element((3,)), IV3, gamma_min=-5.0, gamma_max=6.0)
    t = torch.tensor([0.1, 0.4, 0.8])
    g, dg = gw.gamma(t)
    A = S.GroupwiseSchedule(G.per_element((3,)), IV3).A(t)
    torch.testing.assert_close(g, -5.0 + 11.0 * (1 - A))
    assert gw.breakpoints() == pytest.approx([0.2, 0.55])
    plain = S.GroupwiseSchedule(G.per_element((3,)), IV3)
    assert torch.equal(gw.time_grid([1, 2, 1]), plain.time_grid([1, 2, 1]))
    assert bool((gw.gamma(torch.tensor(0.0))[0] == -5).all())
    assert bool((gw.gamma(torch.tensor(1.0))[0] == 6).all())


# ------------------------------------------------------------------------------------------------
# GUD: variance-preserving coefficients from γ (eq. 14, 17)
# ------------------------------------------------------------------------------------------------

def _gud_schedules():
    log_var = _t(0.8, -0.4, -2.5, -1.0, 0.1, -3.3)
    haar = Haar((1, 8, 8), levels=3).labels()
    col = torch.arange(5).expand(2, 3, 5).contiguous()
    return {
        "linear": S.LinearGamma(log_var, -log_var, a=0.7, gamma_denoise=-6.0, gamma_noise=4.0),
        "linear_power": S.LinearGamma(log_var, -log_var, a=1.3, power=0.5),
        "column": S.ColumnGamma(col, b=0.5),
        "haar": S.HaarColumnGamma(haar["level"], haar["column"], a=0.4, b=0.3),
        "groupwise": S.GroupwiseGamma(G.per_element((3,)), IV3),
    }


GUD = sorted(_gud_schedules())


@pytest.mark.parametrize("name", GUD)
def test_vp_alpha_sigma_from_gamma(name):
    """α² + σ² = 1 (eq. 14) and α² = sigmoid(−γ), i.e. snr = α²/σ² = e^{−γ} (eq. 17)."""
    sched = _gud_schedules()[name].double()
    t = torch.linspace(0, 1, 23, dtype=F64)
    c = sched.marginal(t)
    g, _ = sched.gamma(t)
    torch.testing.assert_close(c.alpha ** 2 + c.sigma ** 2, torch.ones_like(g), atol=1e-14, rtol=0)
    torch.testing.assert_close(c.alpha ** 2, 1 / (1 + torch.exp(g)), atol=1e-14, rtol=1e-12)
    torch.testing.assert_close(torch.log(c.alpha ** 2 / c.sigma ** 2), -g, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(sched.state(t), g)
    torch.testing.assert_close(sched.summary(t), g.flatten(1).mean(1))


def _kinks(sched) -> torch.Tensor:
    return torch.tensor([0.0, 1.0] + list(sched.breakpoints()), dtype=F64)


@pytest.mark.parametrize("name", [n for n in GUD if n != "haar"])
def test_vp_derivatives_against_finite_differences(name):
    """α′, σ′, α′/α and g² = β = σ²γ′ (eq. 14: α = exp(−½∫β)) against central differences."""
    sched = _gud_schedules()[name].double()
    t = torch.linspace(0.021, 0.979, 37, dtype=F64)
    t = t[(t[:, None] - _kinks(sched)[None]).abs().min(1).values > 1e-3]
    h = 1e-6
    cp, cm, c = sched.marginal(t + h), sched.marginal(t - h), sched.marginal(t)
    fd = lambda a, b: (a - b) / (2 * h)
    kw = dict(atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(c.d_alpha, fd(cp.alpha, cm.alpha), **kw)
    torch.testing.assert_close(c.d_sigma, fd(cp.sigma, cm.sigma), **kw)
    torch.testing.assert_close(c.d_log_alpha, fd(cp.alpha.log(), cm.alpha.log()), **kw)
    torch.testing.assert_close(sched.gamma(t)[1], fd(sched.gamma(t + h)[0], sched.gamma(t - h)[0]), **kw)
    beta = -2 * fd(cp.alpha.log(), cm.alpha.log())                # β = −2 d log α / dt
    torch.testing.assert_close(c.g2, beta, **kw)
    torch.testing.assert_close(c.g2, c.sigma ** 2 * sched.gamma(t)[1], atol=1e-12, rtol=1e-12)
    # the general diagonal-path identity g² = 2σσ′ − 2(α′/α)σ² (Marginal docstring)
    torch.testing.assert_close(c.g2, 2 * c.sigma * c.d_sigma - 2 * c.d_log_alpha * c.sigma ** 2,
                               atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["column", "groupwise"])
def test_vp_one_sided_derivatives_at_kinks(name):
    sched = _gud_schedules()[name].double()
    pts = _stored_kinks(sched.groupwise) if name == "groupwise" else sched.breakpoints()
    assert pts, "piecewise-linear schedules have kinks"
    f = lambda tt: sched.gamma(tt)[0]
    for t in pts:
        left_fd, right_fd = _one_sided_fd(f, t)
        torch.testing.assert_close(sched.gamma(_t(t), "left")[1], left_fd, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(sched.gamma(_t(t), "right")[1], right_fd, atol=1e-4, rtol=1e-5)
        assert not torch.equal(sched.gamma(_t(t), "left")[1], sched.gamma(_t(t), "right")[1])


# ------------------------------------------------------------------------------------------------
# GUD linear schedule (eq. 18–20) and §5.1
# ------------------------------------------------------------------------------------------------

LOG_VAR = _t(0.8, -0.4, -2.5, -1.0, 0.1, -3.3)


def test_linear_gamma_eq_18_20_by_hand():
    l = torch.tensor([0.3, 2.0, -1.0, 0.0, 1.5, 0.7], dtype=F64)
    a, gd, gn = 0.6, -7.0, 3.0
    sched = S.LinearGamma(LOG_VAR, l, a=a, gamma_denoise=gd, gamma_noise=gn).double()
    lmax, lmin = max(l.tolist()), min(l.tolist())
    for t in (0.0, 0.37, 1.0):
        g, dg = sched.gamma(_t(t))
        for i in range(6):
            gmin = gd + LOG_VAR[i].item() + a * (l[i].item() - lmax)
            dgam = gn - gd + a * (lmax - lmin)
            assert g[0, i].item() == pytest.approx(gmin + t * dgam, abs=1e-5)
            assert dg[0, i].item() == pytest.approx(dgam, abs=1e-12)


@pytest.mark.parametrize("a", [0.0, 0.5, 1.0, 1.6])
def test_linear_gamma_eq_19_snr_endpoints(a):
    """min_i log SNR_i(0) = −γ̃_denoise and max_i log SNR_i(1) = −γ̃_noise, log SNR_i = log Σ_i − γ_i."""
    l = torch.tensor([0.3, 2.0, -1.0, 0.0, 1.5, 0.7], dtype=F64)
    sched = S.LinearGamma(LOG_VAR, l, a=a, gamma_denoise=-3.0, gamma_noise=5.0).double()
    log_snr = lambda t: LOG_VAR - sched.gamma(_t(t))[0][0]
    assert log_snr(0.0).min().item() == pytest.approx(3.0, abs=1e-5)
    assert log_snr(1.0).max().item() == pytest.approx(-5.0, abs=1e-5)


def test_linear_gamma_a1_is_standard_diffusion():
    """GUD §5.1: a = 1 with l_i = −log Σ_i gives one γ(t) for all components, linear from
    γ̃_denoise + min log Σ to γ̃_noise + max log Σ (the SNR of standard diffusion, Fig. 2a)."""
    gd, gn = -7.0, 3.0
    sched = S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0, gamma_denoise=gd, gamma_noise=gn).double()
    t = torch.linspace(0, 1, 11, dtype=F64)
    g, _ = sched.gamma(t)
    torch.testing.assert_close(g, g[:, :1].expand_as(g), atol=1e-5, rtol=0)
    lo, hi = gd + LOG_VAR.min().item(), gn + LOG_VAR.max().item()
    torch.testing.assert_close(g[:, 0], lo + t * (hi - lo), atol=1e-5, rtol=0)


def test_linear_gamma_whitened_reproduces_the_unwhitened_snr():
    """GUD §5.1, Fig. 2(c): whitened data (log Σ = 0 in the diffused coordinates) with the ordering
    from the unwhitened variances, l_i = −log Σ_i, has the SNR trajectory of standard diffusion."""
    std = S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0).double()
    white = S.LinearGamma(torch.zeros_like(LOG_VAR), -LOG_VAR, a=1.0).double()
    t = torch.linspace(0, 1, 11, dtype=F64)
    snr_std = LOG_VAR - std.gamma(t)[0]                   # log SNR_i = log Σ_i − γ_i
    snr_white = 0.0 - white.gamma(t)[0]                   # Σ_i = 1 after whitening
    torch.testing.assert_close(snr_white, snr_std, atol=1e-5, rtol=0)


def test_linear_gamma_sigma_min_raises_gamma_noise():
    """§5.1: σ_i(1) ≥ σ_min ⇔ γ̃_noise ≥ logit(σ_min²) − min_i log Σ_i."""
    smin = 0.99
    need = _logit(smin ** 2) - LOG_VAR.min().item()
    sched = S.LinearGamma(LOG_VAR, -LOG_VAR, a=0.8, gamma_noise=3.0, sigma_min=smin).double()
    assert need > 3.0 and sched.gamma_noise == pytest.approx(need)
    assert sched.marginal(_t(1.0)).sigma.min().item() >= smin - 1e-6
    # already enough noise: unchanged
    high = S.LinearGamma(LOG_VAR, -LOG_VAR, a=0.8, gamma_noise=need + 2, sigma_min=smin)
    assert high.gamma_noise == pytest.approx(need + 2)
    # without sigma_min, σ_min is violated for this data: the option matters
    plain = S.LinearGamma(LOG_VAR, -LOG_VAR, a=0.8, gamma_noise=3.0).double()
    assert plain.marginal(_t(1.0)).sigma.min().item() < smin


def test_linear_gamma_bad_arguments():
    with pytest.raises(ValueError, match="must have the event shape"):
        S.LinearGamma(LOG_VAR, LOG_VAR[:3], a=1.0)
    with pytest.raises(ValueError, match="inverse softness a must be >= 0"):
        S.LinearGamma(LOG_VAR, -LOG_VAR, a=-0.1)
    with pytest.raises(ValueError, match="sigma_min must lie in"):
        S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0, sigma_min=1.0)
    with pytest.raises(ValueError, match="gamma_noise must exceed gamma_denoise"):
        S.LinearGamma(LOG_VAR, torch.zeros_like(LOG_VAR), a=1.0, gamma_denoise=3.0, gamma_noise=-7.0)


# ------------------------------------------------------------------------------------------------
# time reparametrisation (GUD App. B) and ordering variables (§5.1)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
def test_time_reparam_formula_and_derivative(power):
    t = torch.linspace(0.01, 0.99, 50, dtype=F64)
    s, ds = S.time_reparam(t, power)
    by_hand = torch.tensor([u ** power / (u ** power + (1 - u) ** power) for u in t.tolist()], dtype=F64)
    torch.testing.assert_close(s, by_hand, atol=1e-14, rtol=0)
    h = 1e-6
    fd = (S.time_reparam(t + h, power)[0] - S.time_reparam(t - h, power)[0]) / (2 * h)
    torch.testing.assert_close(ds, fd, atol=1e-6, rtol=1e-6)
    # monotone, s(0) = 0, s(½) = ½, s(1) = 1, symmetric s(1 − t) = 1 − s(t)
    assert bool((s[1:] > s[:-1]).all())
    s_ends = S.time_reparam(_t(0.0, 0.5, 1.0), power)[0]
    assert s_ends.tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-15)
    torch.testing.assert_close(S.time_reparam(1 - t, power)[0], 1 - s, atol=1e-14, rtol=0)
    if power == 1.0:
        torch.testing.assert_close(s, t)


def test_time_reparam_is_the_formula_near_the_ends():
    t = _t(1e-7, 1 - 1e-7)
    s, _ = S.time_reparam(t, 0.5)
    by_hand = torch.tensor([u ** 0.5 / (u ** 0.5 + (1 - u) ** 0.5) for u in t.tolist()], dtype=F64)
    torch.testing.assert_close(s, by_hand, atol=1e-6, rtol=0)


def test_time_reparam_identity_and_bad_power():
    t = _t(0.0, 0.3, 1.0)
    s, ds = S.time_reparam(t, None)
    assert torch.equal(s, t) and torch.equal(ds, torch.ones_like(t))
    with pytest.raises(ValueError, match="power α must be > 0"):
        S.time_reparam(t, 0.0)


def test_linear_gamma_with_power_uses_s_of_t():
    plain = S.LinearGamma(LOG_VAR, -LOG_VAR, a=0.5).double()
    rep = S.LinearGamma(LOG_VAR, -LOG_VAR, a=0.5, power=0.5).double()
    t = _t(0.1, 0.4, 0.8)
    s, ds = S.time_reparam(t, 0.5)
    torch.testing.assert_close(rep.gamma(t)[0], plain.gamma(s)[0])
    torch.testing.assert_close(rep.gamma(t)[1], plain.gamma(s)[1] * ds[:, None])


def test_ordering_fourier_ranges_equal_at_r0_and_r1():
    log_var = _t(1.0, -0.5, -2.0, -4.0, 0.3)
    freq = _t(0.0, 1.0, 2.0, 2.83, 1.41)
    l0 = S.ordering_fourier(log_var, freq, 0.0)
    l1 = S.ordering_fourier(log_var, freq, 1.0)
    torch.testing.assert_close(l0, -log_var)
    assert l1.min().item() == pytest.approx(l0.min().item())
    assert l1.max().item() == pytest.approx(l0.max().item())
    # l at r = 1 is an increasing affine function of |k|
    slope = (l1 - l1[0]) / (freq - freq[0]).clamp_min(1e-12)
    torch.testing.assert_close(slope[1:], slope[1:2].expand(4))
    assert slope[1].item() > 0
    lh = S.ordering_fourier(log_var, freq, 0.25)
    torch.testing.assert_close(lh, 0.75 * l0 + 0.25 * l1)
    with pytest.raises(ValueError, match=r"r must lie in \[0, 1\]"):
        S.ordering_fourier(log_var, freq, 1.5)


# ------------------------------------------------------------------------------------------------
# GUD column schedule (eq. 21) and Haar ⊗ column (eq. 22)
# ------------------------------------------------------------------------------------------------

def _eq21(t: float, i: int, L: int, b: float, gmin: float, gmax: float) -> float:
    ti = b * (L - i) / (L - 1)
    return max(gmin, min(gmax, gmin + (t - ti) * (gmax - gmin) / (1 - b)))


def test_column_gamma_eq_21_by_hand():
    L, b = 5, 0.4
    col = torch.arange(L).expand(1, 2, L).contiguous()
    sched = S.ColumnGamma(col, b=b, gamma_min=-6.0, gamma_max=5.0).double()
    assert sched.t_i[0, 0].tolist() == pytest.approx([b * (L - i) / (L - 1) for i in range(1, L + 1)])
    assert sched.t_i[0, 0, 0].item() == pytest.approx(b) and sched.t_i[0, 0, -1].item() == 0.0
    for t in torch.linspace(0, 1, 31).tolist():
        g = sched.gamma(_t(t))[0][0, 0, 1]
        assert g.tolist() == pytest.approx([_eq21(t, c + 1, L, b, -6.0, 5.0) for c in range(L)], abs=1e-5)


def test_column_gamma_endpoints_and_left_column_first():
    L, b = 6, 0.5
    sched = S.ColumnGamma(torch.arange(L).expand(1, 1, L).contiguous(), b=b).double()
    assert bool((sched.gamma(_t(0.0))[0] == -7).all()) and bool((sched.gamma(_t(1.0))[0] == 7).all())
    for t in torch.linspace(0, 1, 41, dtype=F64):
        g = sched.gamma(t[None])[0][0, 0, 0]
        assert bool((g[:-1] <= g[1:]).all()), "columns to the left are less noised (generated first)"


def test_column_gamma_noising_front_moves_one_column_per_dt():
    """GUD App. C: after Δt = b/(L − 1) a column has the noising state of its left neighbour:
    γ_{c+1}(t) = γ_c(t + Δt)."""
    L, b = 5, 0.6
    sched = S.ColumnGamma(torch.arange(L).expand(1, 1, L).contiguous(), b=b).double()
    dt = b / (L - 1)
    t = torch.linspace(0, 1 - dt, 29, dtype=F64)
    now = sched.gamma(t)[0][:, 0, 0]
    later = sched.gamma(t + dt)[0][:, 0, 0]
    torch.testing.assert_close(now[:, 1:], later[:, :-1], atol=1e-5, rtol=0)


def test_column_gamma_b0_is_standard_diffusion_and_bad_args():
    sched = S.ColumnGamma(torch.arange(4).expand(1, 2, 4).contiguous(), b=0.0)
    g = sched.gamma(torch.linspace(0, 1, 9))[0]
    assert torch.equal(g, g[..., :1].expand_as(g))
    with pytest.raises(ValueError, match=r"b must lie in \[0, 1\)"):
        S.ColumnGamma(torch.arange(4), b=1.0)
    with pytest.raises(ValueError, match="gamma_max .* must exceed gamma_min"):
        S.ColumnGamma(torch.arange(4), b=0.5, gamma_min=3.0, gamma_max=3.0)


def _haar_by_hand(t: float, level: int, column: int, n_levels: int, L: int, a: float, b: float,
                  gmin: float = -7.0, gmax: float = 7.0) -> float:
    """GUD eq. (22) with the documented deviation t_i = clip((t − c_i)/(1 − a)); i = 𝒩 + 1 − level."""
    i, j = n_levels + 1 - level, column + 1
    c_i = a * (n_levels - i) / (n_levels - 1)
    c_ij = b * (L - j) / (L - 1) if L > 1 else 0.0
    ti = min(1.0, max(0.0, (t - c_i) / (1 - a)))
    return max(gmin, min(gmax, gmin + (gmax - gmin) * (ti - c_ij) / (1 - b)))


def _haar_sched(a=0.4, b=0.3):
    lab = Haar((1, 8, 8), levels=3).labels()
    return lab, S.HaarColumnGamma(lab["level"], lab["column"], a=a, b=b).double()


def test_haar_column_gamma_eq_22_by_hand():
    a, b = 0.4, 0.3
    lab, sched = _haar_sched(a, b)
    level, column = lab["level"][0], lab["column"][0]
    widths = {n: 8 >> n for n in (1, 2, 3)}                 # columns per sub-band at level n
    for t in torch.linspace(0, 1, 26).tolist():
        g = sched.gamma(_t(t))[0][0, 0]
        for r in range(8):
            for c in range(8):
                n = int(level[r, c])
                expected = _haar_by_hand(t, n, int(column[r, c]), 3, widths[n], a, b)
                assert g[r, c].item() == pytest.approx(expected, abs=1e-5), (t, r, c)


def test_haar_printed_formula_would_never_noise_the_coarsest_level():
    """The documented deviation: with the printed t_i = clip(t − c_i/(1 − a)) and a ≥ 0.5 the coarsest
    level (c_1 = a) has t_i = 0 on all of [0, 1]; the implemented (t − c_i)/(1 − a) reaches 1 at t = 1."""
    a = 0.5
    printed = [min(1.0, max(0.0, t - a / (1 - a))) for t in torch.linspace(0, 1, 11).tolist()]
    assert max(printed) == 0.0
    lab, sched = _haar_sched(a=a, b=0.3)
    coarse = lab["level"] == 3
    assert bool((sched.gamma(_t(1.0))[0][0][coarse] == 7).all())


@pytest.mark.parametrize("a,b", [(0.3, 0.3), (0.5, 0.5), (0.7, 0.2)])
def test_haar_column_gamma_endpoints_and_coarsest_noised_last(a, b):
    lab, sched = _haar_sched(a, b)
    level = lab["level"]
    assert bool((sched.gamma(_t(0.0))[0] == -7).all())
    torch.testing.assert_close(sched.gamma(_t(1.0))[0], torch.full((1, 1, 8, 8), 7.0, dtype=F64),
                               atol=1e-5, rtol=0)  # up to the float32 offsets c_i
    ts = torch.linspace(0, 1, 201, dtype=F64)
    g = sched.gamma(ts)[0]                                          # (T, 1, 8, 8)
    # first time each level leaves γ_min: coarser levels (larger label) start later
    start = {n: ts[(g[:, level == n] > -7).any(1)].min().item() for n in (1, 2, 3)}
    assert start[3] > start[2] > start[1]
    assert start[3] >= a - 1e-9                                     # c_1 = a: nothing happens before
    # at every time the coarsest level is at most as noised as the finest one, on average
    assert bool((g[:, level == 3].mean(1) <= g[:, level == 1].mean(1) + 1e-5).all())


def test_haar_column_gamma_derivative_away_from_kinks():
    a, b = 0.4, 0.3
    _, sched = _haar_sched(a, b)
    t = torch.tensor([0.05, 0.23, 0.51, 0.66, 0.93], dtype=F64)
    h = 1e-7
    fd = (sched.gamma(t + h)[0] - sched.gamma(t - h)[0]) / (2 * h)
    for side in ("left", "right"):
        torch.testing.assert_close(sched.gamma(t, side)[1], fd, atol=1e-5, rtol=1e-6)


def _haar_kinks(a: float, b: float) -> list[float]:
    """Times where some γ_ij of eq. (22) changes slope: t_i = c_ij and t_i = c_ij + 1 − b, with
    t = c_i + (1 − a) t_i, for every level i and column j of the 8×8, 3-level Haar basis."""
    pts = set()
    for n_lev, L in ((3, 1), (2, 2), (1, 4)):
        i = 3 + 1 - n_lev
        c_i = a * (3 - i) / 2
        for j in range(1, L + 1):
            c_ij = b * (L - j) / (L - 1) if L > 1 else 0.0
            for ti in (c_ij, c_ij + 1 - b):
                t = c_i + (1 - a) * ti
                if 0 < round(t, 9) < 1:
                    pts.add(round(t, 9))
    return sorted(pts)


def test_haar_column_gamma_has_kinks_where_eq_22_says():
    a, b = 0.4, 0.3
    _, sched = _haar_sched(a, b)
    delta = 1e-6
    for t in _haar_kinks(a, b):
        before, after = sched.gamma(_t(t - delta))[1], sched.gamma(_t(t + delta))[1]
        assert not torch.equal(before, after), t
    # and nowhere else: between consecutive kinks the slope is constant
    pts = [0.0] + _haar_kinks(a, b) + [1.0]
    for lo, hi in zip(pts, pts[1:]):
        inner = torch.linspace(lo + 1e-6, hi - 1e-6, 5, dtype=F64)
        dg = sched.gamma(inner)[1]
        assert torch.equal(dg, dg[:1].expand_as(dg)), (lo, hi)


def test_haar_column_gamma_lists_its_breakpoints():
    a, b = 0.4, 0.3
    _, sched = _haar_sched(a, b)
    assert sched.breakpoints() == pytest.approx(_haar_kinks(a, b), abs=1e-6)


def test_column_gamma_lists_its_breakpoints():
    L, b = 5, 0.4
    sched = S.ColumnGamma(torch.arange(L).expand(1, 1, L).contiguous(), b=b)
    starts = [b * (L - i) / (L - 1) for i in range(1, L + 1)]
    expected = sorted({q for s in starts for q in (round(s, 9), round(s + 1 - b, 9)) if 0 < q < 1})
    assert sched.breakpoints() == pytest.approx(expected, abs=1e-6)


def test_haar_column_gamma_bad_arguments():
    lab = Haar((1, 4, 4), levels=2).labels()
    with pytest.raises(ValueError, match=r"a must lie in \[0, 1\)"):
        S.HaarColumnGamma(lab["level"], lab["column"], a=1.0, b=0.5)
    with pytest.raises(ValueError, match=r"b must lie in \[0, 1\)"):
        S.HaarColumnGamma(lab["level"], lab["column"], a=0.5, b=-0.1)
    with pytest.raises(ValueError, match="same \\(event\\) shape"):
        S.HaarColumnGamma(lab["level"], lab["column"][..., :2], a=0.5, b=0.5)
    with pytest.raises(ValueError, match="must exceed gamma_min"):
        S.HaarColumnGamma(lab["level"], lab["column"], a=0.5, b=0.5, gamma_min=1.0, gamma_max=0.0)


# ------------------------------------------------------------------------------------------------
# one-sided γ′ at every kink of eq. 21 and eq. 22 (the kink times decide, not a rounded clip argument)
# ------------------------------------------------------------------------------------------------

def _dedup(pts, tol: float = 1e-9) -> list[float]:
    out: list[float] = []
    for p in sorted(pts):
        if tol < p < 1 - tol and (not out or p - out[-1] > tol):  # t = 0, 1 are not kinks inside (0, 1)
            out.append(p)
    return out


def _column_kinks_by_hand(L: int, b: float) -> list[float]:
    """Eq. 21: column i ramps on [t_i, t_i + 1 − b], t_i = b (L − i)/(L − 1)."""
    starts = [b * (L - i) / (L - 1) for i in range(1, L + 1)]
    return _dedup(starts + [t + 1 - b for t in starts])


def _check_one_sided_at_kinks(sched, kinks_by_hand: list[float]):
    """At every breakpoint, γ′ from each side equals the one-sided finite difference of γ in float64,
    with h below a quarter of the distance to the next kink (so t ± h stays on one linear piece)."""
    pts = sched.breakpoints()
    assert pts == pytest.approx(kinks_by_hand, abs=1e-12) and len(pts) == len(kinks_by_hand)
    grid = [0.0] + pts + [1.0]
    gaps = [min(grid[k + 1] - grid[k], grid[k + 2] - grid[k + 1]) for k in range(len(pts))]
    t, h = _t(*pts), _t(*[min(1e-7, g / 4) for g in gaps])
    g0 = sched.gamma(t)[0]
    hb = h.reshape(-1, *([1] * (g0.dim() - 1)))
    left_fd = (g0 - sched.gamma(t - h)[0]) / hb
    right_fd = (sched.gamma(t + h)[0] - g0) / hb
    left, right = sched.gamma(t, "left")[1], sched.gamma(t, "right")[1]
    torch.testing.assert_close(left, left_fd, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(right, right_fd, atol=1e-4, rtol=1e-6)
    assert bool((left != right).flatten(1).any(1).all()), "every breakpoint is a kink of some component"


@pytest.mark.parametrize("b", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("L", [5, 8, 32])
def test_column_gamma_one_sided_derivatives_at_every_kink(L, b):
    from gdmkit.bases import Pixel
    sched = S.ColumnGamma(Pixel((1, L, L)).labels()["column"], b=b, gamma_min=-7, gamma_max=7)
    _check_one_sided_at_kinks(sched, _column_kinks_by_hand(L, b))


def _haar_kinks_by_hand(levels: int, W: int, a: float, b: float) -> list[float]:
    """Eq. 22: level n (i = 𝒩 + 1 − n) with L = W/2ⁿ columns; column j ramps on
    [c_i + (1 − a) c_ij, c_i + (1 − a)(c_ij + 1 − b)]."""
    pts = []
    for n in range(1, levels + 1):
        i, L = levels + 1 - n, W >> n
        c_i = a * (levels - i) / (levels - 1) if levels > 1 else 0.0
        for j in range(1, L + 1):
            c_ij = b * (L - j) / (L - 1) if L > 1 else 0.0
            pts += [c_i + (1 - a) * c_ij, c_i + (1 - a) * (c_ij + 1 - b)]
    return _dedup(pts)


@pytest.mark.parametrize("b", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("a", [0.0, 0.4])
@pytest.mark.parametrize("side,levels", [(16, 2), (40, 3), (64, 2)])   # finest L = 8, 20, 32
def test_haar_column_gamma_one_sided_derivatives_at_every_kink(side, levels, a, b):
    lab = Haar((1, side, side), levels).labels()
    sched = S.HaarColumnGamma(lab["level"], lab["column"], a=a, b=b)
    _check_one_sided_at_kinks(sched, _haar_kinks_by_hand(levels, side, a, b))


def test_reported_column_gamma_kink_example():
    """The reported case: at its own breakpoint t = 0.32499999999999996 the column with t_i = 0.225 has
    reached γ_max (γ = 7 − 4e-15), so γ′ on (t, t + ε) is 0; on (t − ε, t) it is 14/(1 − 0.9) = 140."""
    from gdmkit.bases import Pixel
    sched = S.ColumnGamma(Pixel((1, 5, 5)).labels()["column"], b=0.9, gamma_min=-7, gamma_max=7)
    t = _t(0.32499999999999996)
    assert 0.32499999999999996 in sched.breakpoints()
    col = (sched.t_i == 0.225).nonzero()[0].tolist()                      # column i = 4
    g, right = sched.gamma(t, "right")
    assert g[(0, *col)].item() == pytest.approx(7.0, abs=1e-13)
    assert right[(0, *col)].item() == 0.0
    assert sched.gamma(t, "left")[1][(0, *col)].item() == pytest.approx(140.0, rel=1e-12)


def test_reported_haar_column_gamma_kink_example():
    """The reported case: Haar((1, 16, 16), 2), a = 0, b = 0.3, at the breakpoint t = 0.742857… where the
    finest-level column with c_ij = 0.3/7 reaches γ_max: slope 14/0.7 = 20 from the left, 0 from the right."""
    lab = Haar((1, 16, 16), 2).labels()
    sched = S.HaarColumnGamma(lab["level"], lab["column"], a=0.0, b=0.3)
    t = [p for p in sched.breakpoints() if abs(p - 0.742857) < 1e-6]
    assert t == [pytest.approx(0.3 / 7 + 0.7, abs=1e-15)]
    sel = (lab["level"] == 1) & (lab["column"] == 6)                    # L − 1 − column = 1
    for tk in (t[0], 0.7428571428571429):
        left, right = sched.gamma(_t(tk), "left")[1][0][sel], sched.gamma(_t(tk), "right")[1][0][sel]
        torch.testing.assert_close(left, torch.full_like(left, 14 / 0.7), atol=0, rtol=1e-12)
        assert bool((right == 0).all())


# ------------------------------------------------------------------------------------------------
# bad input: NaN / inf / non-integer labels are refused, never propagated
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("v", [float("nan"), float("inf")])
def test_non_finite_intervals_raise(v):
    with pytest.raises(ValueError, match=r"intervals of groups \[1\] are not finite"):
        S.GroupwiseSchedule(G.cdm((1, 2, 2)), torch.tensor([[0.5, 1.0], [0.0, v]]))
    with pytest.raises(ValueError, match="boundaries must be finite numbers"):
        S.gdm_intervals([0.2, v])
    with pytest.raises(ValueError, match="not finite"):
        S.schedule_sampler(G.cdm((1, 2, 2)), intervals=torch.tensor([[v, 1.0], [0.0, 0.5]]))
    with pytest.raises(ValueError, match="not finite"):
        S.GroupwiseGamma(G.cdm((1, 2, 2)), torch.tensor([[v, 1.0], [0.0, 0.5]]))


@pytest.mark.parametrize("v", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_schedule_parameters_raise(v):
    col = torch.arange(4)
    lab = Haar((1, 4, 4), levels=2).labels()
    cases = [
        ("a", lambda: S.LinearGamma(LOG_VAR, -LOG_VAR, a=v)),
        ("gamma_denoise", lambda: S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0, gamma_denoise=v)),
        ("gamma_noise", lambda: S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0, gamma_noise=v)),
        ("power", lambda: S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0, power=v)),
        ("b", lambda: S.ColumnGamma(col, b=v)),
        ("gamma_min", lambda: S.ColumnGamma(col, b=0.5, gamma_min=v)),
        ("gamma_max", lambda: S.ColumnGamma(col, b=0.5, gamma_max=v)),
        ("a", lambda: S.HaarColumnGamma(lab["level"], lab["column"], a=v, b=0.5)),
        ("b", lambda: S.HaarColumnGamma(lab["level"], lab["column"], a=0.5, b=v)),
        ("gamma_max", lambda: S.HaarColumnGamma(lab["level"], lab["column"], a=0.5, b=0.5, gamma_max=v)),
        ("gamma_min", lambda: S.GroupwiseGamma(G.per_element((3,)), gamma_min=v)),
        ("gamma_max", lambda: S.GroupwiseGamma(G.per_element((3,)), gamma_max=v)),
        ("power", lambda: S.time_reparam(_t(0.5), v)),
    ]
    for name, build in cases:
        with pytest.raises(ValueError, match=f"{name} must be a finite number, got"):
            build()
    with pytest.raises(ValueError, match="sigma_min must"):
        S.LinearGamma(LOG_VAR, -LOG_VAR, a=1.0, sigma_min=v)
    bad = LOG_VAR.clone()
    bad[2] = v
    with pytest.raises(ValueError, match="log_var has 1 non-finite entries"):
        S.LinearGamma(bad, -LOG_VAR, a=1.0)
    with pytest.raises(ValueError, match="order has 1 non-finite entries"):
        S.LinearGamma(LOG_VAR, bad, a=1.0)


def test_fractional_schedule_labels_raise():
    with pytest.raises(ValueError, match="column labels must be whole numbers"):
        S.ColumnGamma(torch.tensor([0.0, 0.5, 1.0]), b=0.5)
    lab = Haar((1, 4, 4), levels=2).labels()
    with pytest.raises(ValueError, match="level labels must be whole numbers"):
        S.HaarColumnGamma(lab["level"] * 0.5, lab["column"], a=0.5, b=0.5)
    with pytest.raises(ValueError, match="column labels must be non-empty and >= 0"):
        S.ColumnGamma(torch.tensor([-1, 0, 1]), b=0.5)


# ------------------------------------------------------------------------------------------------
# ScheduleSampler (GDM App. D)
# ------------------------------------------------------------------------------------------------

def test_schedule_sampler_draws_a_member_then_an_order():
    """Each call draws i ~ U{0..n−1} (one randint) and, with shuffle, a permutation (one randperm) of
    that member's groups, from the caller's generator: replicated here with plain torch calls."""
    fam = [G.blocks((1, 4, 4), 2), G.right_to_left((1, 4, 4), 4), G.cdm((1, 4, 4))]
    sampler = S.schedule_sampler(fam, shuffle=True)
    assert isinstance(sampler, S.ScheduleSampler)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(12):
        sched = sampler(g1)
        i = int(torch.randint(len(fam), (1,), generator=g2))
        order = torch.randperm(fam[i].k, generator=g2)
        assert torch.equal(sched.grouping.group, G.permute(fam[i], order).group)
        assert torch.equal(sched.intervals, S.uniform_intervals(fam[i].k))
    plain = S.schedule_sampler(fam[0])
    assert torch.equal(plain(torch.Generator().manual_seed(0)).grouping.group, fam[0].group)
    with pytest.raises(ValueError, match="at least one grouping"):
        S.schedule_sampler([])
    with pytest.raises(ValueError, match="share one event shape"):
        S.schedule_sampler([G.cdm((1, 4, 4)), G.cdm((1, 2, 2))])
    with pytest.raises(ValueError, match=r"shape \(k, 2\) = \(2, 2\)"):
        S.schedule_sampler([G.cdm((1, 4, 4))], intervals=S.uniform_intervals(3))


# --------------------------------------------------------------------------- per-component times
def _diagonal_schedules():
    lab = Haar((1, 8, 8), levels=3).labels()
    level, column = lab["level"].expand(1, 8, 8), lab["column"].expand(1, 8, 8)
    log_var = torch.linspace(-3, 1, 64, dtype=torch.float64).reshape(1, 8, 8)
    grouping = G.Grouping(torch.arange(64).reshape(1, 8, 8) // 16)
    return {"LinearGamma": S.LinearGamma(log_var, -log_var, 0.7, power=0.5),
            "ColumnGamma": S.ColumnGamma(column, 0.4),
            "HaarColumnGamma": S.HaarColumnGamma(level, column, 0.5, 0.3),
            "PrintedHaarColumnGamma": S.PrintedHaarColumnGamma(level, column, 0.4, 0.3),
            "GroupwiseGamma": S.GroupwiseGamma(grouping)}


@pytest.mark.parametrize("name", list(_diagonal_schedules()))
def test_gamma_diagonal_is_the_diagonal_of_gamma(name):
    """γ_i(t_i) in one elementwise pass (or the chunked fallback) equals row i of γ(t) at t = t_i."""
    s = _diagonal_schedules()[name].double()
    t = torch.rand(s.event_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    full = s.gamma(t.reshape(-1))[0].reshape(t.numel(), -1)
    assert torch.equal(s.gamma_diagonal(t), full.diagonal().reshape(t.shape))
    assert torch.equal(s.gamma_diagonal(t, chunk=7), full.diagonal().reshape(t.shape))
    with pytest.raises(ValueError, match="one time per component"):
        s.gamma_diagonal(t.reshape(-1))
