"""GUD eq. 22 (Haar ⊗ column): crossing / generation times, the printed formula next to the corrected
one, and the cascade thresholds — each checked against formulas re-derived here from the paper."""
from __future__ import annotations

import math

import pytest
import torch

from gdmkit import bases, config, groupings
from gdmkit import schedules as S

GMIN, GMAX = -7.0, 7.0
HAAR = bases.Haar((1, 16, 16), 3).labels()  # 3 levels: 2, 4 and 8 columns per sub-band


def _offsets(a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """c_i and c_ij of GUD App. B per component, i = 𝒩 + 1 − n (coarsest level first)."""
    n_levels = int(HAAR["level"].max())
    i = (n_levels + 1 - HAAR["level"]).double()
    c_i = a * (n_levels - i) / (n_levels - 1)
    L = (16 // 2 ** HAAR["level"]).double()  # columns per sub-band at level n: 16 / 2^n
    j = HAAR["column"].double() + 1
    return c_i, b * (L - j) / (L - 1)


@pytest.mark.parametrize("a, b", [(0.0, 0.0), (0.3, 0.7), (0.5, 0.5), (0.7, 0.3), (0.9, 0.6)])
@pytest.mark.parametrize("level", [0.0, -3.0, 6.5])
def test_crossing_times_of_the_corrected_schedule_match_the_closed_form(a, b, level):
    # γ_ij = γ_min + Δ ((t − c_i)/(1 − a) − c_ij)/(1 − b) on the ramp: solve γ_ij(t*) = level
    c_i, c_ij = _offsets(a, b)
    expected = c_i + (1 - a) * (c_ij + (1 - b) * (level - GMIN) / (GMAX - GMIN))
    sched = S.HaarColumnGamma(HAAR["level"], HAAR["column"], a, b, GMIN, GMAX)
    got = S.crossing_times(sched, level)
    assert got.dtype == torch.float64 and got.shape == HAAR["level"].shape
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)


def test_generation_times_shift_the_level_by_the_log_variance():
    sched = S.HaarColumnGamma(HAAR["level"], HAAR["column"], 0.4, 0.5)
    log_var = torch.linspace(-4, 1, HAAR["level"].numel(), dtype=torch.float64).reshape(HAAR["level"].shape)
    torch.testing.assert_close(S.generation_times(sched, log_var, log_snr=0.5),
                               S.crossing_times(sched, log_var - 0.5), atol=0, rtol=0)
    # variance-matching prior: SNR = 1 where γ = 0
    torch.testing.assert_close(S.generation_times(sched), S.crossing_times(sched, 0.0), atol=0, rtol=0)


def test_crossing_times_of_a_linear_schedule_and_its_edge_cases():
    log_var = torch.tensor([0.0, -2.0, -4.0])
    sched = S.LinearGamma(log_var, -log_var, a=0.5, gamma_denoise=-3.0, gamma_noise=3.0)
    g0, delta = sched.gamma_min.double(), sched.delta
    level = torch.tensor([g0[0] - 1.0, g0[1] + 0.3 * delta, g0[2] + delta + 1.0], dtype=torch.float64)
    t = S.crossing_times(sched, level)
    assert t[0] == 0.0                                  # already above the level at t = 0
    assert math.isclose(float(t[1]), 0.3, abs_tol=1e-12)  # γ = γ_min,i + t Δγ (eq. 18)
    assert math.isnan(float(t[2]))                      # never reached on [0, 1]


def test_crossing_times_refuses_a_schedule_without_gamma():
    with pytest.raises(ValueError, match="GammaSchedule"):
        S.crossing_times(S.GroupwiseSchedule(groupings.per_element((3,))), 0.0)


def _printed_gamma(t: float, a: float, b: float) -> torch.Tensor:
    """GUD eq. 22 exactly as printed: t_i = clip_{0,1}(t − c_i/(1 − a))."""
    c_i, c_ij = _offsets(a, b)
    ti = (t - c_i / (1 - a)).clamp(0, 1)
    return (GMIN + (GMAX - GMIN) * (ti - c_ij) / (1 - b)).clamp(GMIN, GMAX)


@pytest.mark.parametrize("a, b", [(0.3, 0.7), (0.5, 0.5), (0.7, 0.3)])
def test_printed_schedule_is_the_printed_formula(a, b):
    sched = S.PrintedHaarColumnGamma(HAAR["level"], HAAR["column"], a, b).double()
    ts = torch.linspace(0, 1, 41, dtype=torch.float64)
    got = sched.gamma(ts)[0]
    want = torch.stack([_printed_gamma(float(t), a, b) for t in ts])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    # the one-sided derivative is the finite difference away from the kinks
    h, kinks = 1e-7, torch.tensor(sched.breakpoints(), dtype=torch.float64)
    tm = torch.tensor([t for t in torch.linspace(0.01, 0.99, 37).tolist()
                       if kinks.numel() == 0 or (kinks - t).abs().min() > 1e-3], dtype=torch.float64)
    fd = (sched.gamma(tm + h)[0] - sched.gamma(tm - h)[0]) / (2 * h)
    for side in ("left", "right"):
        torch.testing.assert_close(sched.gamma(tm, side)[1], fd, atol=1e-5, rtol=1e-6)
    again = config.from_config(sched.to_config())
    assert type(again) is S.PrintedHaarColumnGamma
    torch.testing.assert_close(again.double().gamma(ts)[0], got, atol=0, rtol=0)


@pytest.mark.parametrize("a", [0.5, 0.6, 0.7, 0.9])
def test_printed_formula_never_noises_the_coarsest_level_for_a_at_least_half(a):
    sched = S.PrintedHaarColumnGamma(HAAR["level"], HAAR["column"], a, 0.5)
    coarsest = HAAR["level"] == 3
    g = sched.gamma(torch.linspace(0, 1, 101))[0]
    assert bool((g[:, coarsest] == GMIN).all())
    assert bool(torch.isnan(S.crossing_times(sched, 0.0)[coarsest]).all())
    corrected = S.HaarColumnGamma(HAAR["level"], HAAR["column"], a, 0.5)
    # every component reaches γ_max at t = 1
    torch.testing.assert_close(corrected.gamma(torch.ones(1))[0], torch.full((1, 1, 16, 16), GMAX))


def test_printed_formula_stops_short_of_gamma_max_below_half_and_agrees_at_a_zero():
    sched = S.PrintedHaarColumnGamma(HAAR["level"], HAAR["column"], 0.3, 0.5)
    g1 = sched.gamma(torch.ones(1))[0][0]
    # level i = 1 at t = 1: t_1 = 1 − 0.3/0.7, so columns with c_1j > t_1 − (1 − b) stay below γ_max
    assert float(g1[HAAR["level"] == 3].min()) < GMAX
    ts = torch.linspace(0, 1, 23)
    for b in (0.0, 0.4):
        p = S.PrintedHaarColumnGamma(HAAR["level"], HAAR["column"], 0.0, b).gamma(ts)[0]
        c = S.HaarColumnGamma(HAAR["level"], HAAR["column"], 0.0, b).gamma(ts)[0]
        torch.testing.assert_close(p, c, atol=0, rtol=0)


def _active_levels(sched, ts) -> torch.Tensor:
    """Per time, how many levels have a component strictly between γ_min and γ_max."""
    g = sched.gamma(ts)[0]
    inside = (g > GMIN) & (g < GMAX)
    return torch.stack([inside[:, HAAR["level"] == n].any(1) for n in (1, 2, 3)], 1).sum(1)


def test_levels_are_hard_cascaded_exactly_from_the_threshold():
    thr = S.level_cascade_threshold(3)
    assert thr == pytest.approx(2 / 3)
    ts = torch.linspace(0, 1, 3001, dtype=torch.float64)
    for a in (thr + 1e-9, 0.8, 0.95):
        assert int(_active_levels(S.HaarColumnGamma(HAAR["level"], HAAR["column"], a, 0.3).double(),
                                  ts).max()) == 1
    assert int(_active_levels(S.HaarColumnGamma(HAAR["level"], HAAR["column"], thr - 0.02, 0.3).double(),
                              ts).max()) == 2


def test_columns_are_hard_cascaded_exactly_from_the_threshold():
    fine = HAAR["level"] == 1  # 8 columns
    thr = S.column_cascade_threshold(8)
    assert thr == pytest.approx(7 / 8)
    ts = torch.linspace(0, 1, 4001, dtype=torch.float64)

    def most_active_columns(b):
        g = S.HaarColumnGamma(HAAR["level"], HAAR["column"], 0.5, b).double().gamma(ts)[0]
        inside = (g > GMIN) & (g < GMAX) & fine
        return int(torch.stack([inside[:, fine & (HAAR["column"] == j)].any(1) for j in range(8)], 1)
                   .sum(1).max())

    assert most_active_columns(thr + 1e-9) == 1
    assert most_active_columns(thr - 0.03) == 2


def test_a_b_zero_is_one_gamma_for_every_component():
    sched = S.HaarColumnGamma(HAAR["level"], HAAR["column"], 0.0, 0.0)
    ts = torch.linspace(0, 1, 11)
    g = sched.gamma(ts)[0]
    torch.testing.assert_close(g, (GMIN + (GMAX - GMIN) * ts)[:, None, None, None].expand_as(g))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_cascade_thresholds_refuse_bad_counts(bad):
    with pytest.raises((ValueError, TypeError)):
        S.level_cascade_threshold(bad)
    with pytest.raises((ValueError, TypeError)):
        S.column_cascade_threshold(bad)
