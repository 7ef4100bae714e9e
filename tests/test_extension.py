"""Image extension and partial reconstruction (GUD App. C): the derived precondition and its checks."""
import math

import pytest
import torch

from gdmkit import bases, extension as ext, paths, schedules, stationarity as st


def column_schedule(L, b, H=3):
    return schedules.ColumnGamma(bases.Pixel((1, H, L)).labels()["column"], b)


def column_gammas(s, t):
    return ext._column_gamma(s, t)


@pytest.mark.parametrize("L,b,k", [(16, 0.5, 2), (16, 0.7, 5), (9, 0.3, 3), (32, 0.5, 9)])
def test_shift_identity_eq21(L, b, k):
    """γ_i(t − kΔt) = γ_{i−k}(t): the noising front moves one column per Δt = b/(L − 1)."""
    s = column_schedule(L, b)
    dt = ext.delta_t(b, L)
    for t in torch.linspace(k * dt, 1.0, 23).tolist():
        g_end, g_t = column_gammas(s, t - k * dt), column_gammas(s, t)
        assert torch.allclose(g_end[k:], g_t[:L - k], atol=1e-9)


def test_closed_form_condition_matches_schedule():
    """t_lo ≤ t ≤ t_hi (derived) ⇔ the schedule's own γ says emitted columns are clean at t − kΔt and
    appended columns are at γmax at t."""
    checked = 0
    for L in (5, 8, 16):
        for b in (0.2, 0.45, 0.5, 0.6, 0.8, 0.9):
            s = column_schedule(L, b)
            for k in range(1, L):
                t_lo, t_hi = ext.feasible_times(b, L, k)
                dt = ext.delta_t(b, L)
                for t in torch.linspace(k * dt, 1.0, 31).tolist():
                    g_t, g_end = column_gammas(s, t), column_gammas(s, t - k * dt)
                    direct = bool((g_t[L - k:] >= s.gamma_max - 1e-7).all()
                                  and (g_end[:k] <= s.gamma_min + 1e-7).all())
                    derived = t_lo - 1e-9 <= t <= t_hi + 1e-9
                    assert direct == derived, (L, b, k, t)
                    checked += 1
    assert checked > 1000


@pytest.mark.parametrize("L", [4, 16, 32])
def test_min_softness_and_max_shift_agree(L):
    for b in torch.linspace(0.05, 0.95, 37).tolist():
        k_max = ext.max_shift(b, L)
        for k in range(1, L):
            t_lo, t_hi = ext.feasible_times(b, L, k)
            ok = b >= ext.min_softness(L, k) - 1e-12
            assert ok == (k <= k_max) == (t_lo <= t_hi + 1e-9)
            # interpretation: active band (1 − b)/Δt plus k fits into L + 1 columns
            assert ok == ((1 - b) * (L - 1) / b + k <= L + 1 + 1e-9)


def test_paper_setting_refused_with_reason_and_fix():
    """GUD App. C uses b = 0.5, k = 9 at L = 32: exact restoration needs b ≥ 31/55."""
    s = column_schedule(32, 0.5)
    with pytest.raises(ValueError) as e:
        ext.plan_extension(s, 9)
    msg = str(e.value)
    assert "(L-1)/(2L-k) = 0.5636" in msg and "k <= 2" in msg and "b >= 0.5636" in msg
    plan = ext.plan_extension(column_schedule(32, 0.57), 9)
    assert plan.feasible and plan.gap_appended < 1e-9 and plan.gap_emitted < 1e-9
    loose = ext.plan_extension(s, 9, strict=False)
    assert not loose.feasible and loose.gap_appended > 0 and loose.gap_emitted == 0


def test_refusals_for_bad_arguments():
    s = column_schedule(16, 0.6)
    with pytest.raises(ValueError, match="1 <= k <= L - 1"):
        ext.plan_extension(s, 16)
    with pytest.raises(ValueError, match="t - kΔt"):
        ext.plan_extension(s, 2, t=0.01)
    with pytest.raises(ValueError, match="ColumnGamma"):
        ext.plan_extension(schedules.LinearGamma(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), 1.0), 1)
    with pytest.raises(ValueError, match="no k at b"):
        ext.plan_extension(column_schedule(16, 0.3), 1)


def test_column_regions_follow_gamma():
    s = column_schedule(16, 0.6)
    for t in torch.linspace(0, 1, 41).tolist():
        r, g = ext.column_regions(s, t), column_gammas(s, t)
        assert torch.equal(r == ext.FROZEN, g <= s.gamma_min + 1e-9)
        assert torch.equal(r == ext.PENDING, g >= s.gamma_max - 1e-9)


def test_time_grid_between_contains_kinks():
    s = column_schedule(16, 0.5)
    g = ext.time_grid_between(s, 0.6, 0.3, 3)
    assert g[0] == 0.6 and g[-1] == 0.3 and bool((g[1:] < g[:-1]).all())
    for p in s.breakpoints():
        if 0.3 < p < 0.6:
            assert float((g - p).abs().min()) < 1e-9


def _oracle_path(L, b, H=4):
    S = st.periodic_spectrum((H, 64), corr_length=1.5)
    orc = st.window_oracle(st.covariance_function(S), (H, L))
    basis = bases.Pixel((1, H, L))
    path = paths.DiagonalPath(basis, schedules.ColumnGamma(basis.labels()["column"], b), target="eps")
    return orc, path, st.covariance_function(S)


def test_extension_restores_the_marginal_at_t():
    """After a shift, the window at t has the exact marginal law there: per column variance
    α_i² c(0) + σ_i² (exact oracle), within 5 standard errors."""
    L, b, k, n = 8, 0.7, 2, 4000
    orc, path, c = _oracle_path(L, b)
    res = ext.extend(orc.denoiser(path), path, n, 2, k, generator=torch.Generator().manual_seed(0),
                     steps=8, start_steps=16, finish_steps=4, record=3)
    m = path.schedule.marginal(torch.tensor([res.plan.t]))
    want = (m.alpha.square() * c[0, 0] + m.sigma.square())[0, 0, 0].double()       # (L,)
    for w in res.windows[1:]:                                                          # after 1 and 2 shifts
        var = w[:, 0, 0].double().square().mean(0)                                  # row 0, (L,)
        se = want * math.sqrt(2 / n)                                                  # Gaussian, zero mean
        assert bool(((var - want).abs() < 5 * se).all()), (var, want)
    assert res.strip.shape == (n, 1, 4, L + 2 * k)


def test_extension_is_reproducible_and_freezes_emitted_columns():
    orc, path, _ = _oracle_path(8, 0.7)
    kw = dict(steps=2, start_steps=4, finish_steps=4)
    a = ext.extend(orc.denoiser(path), path, 3, 4, 2, generator=torch.Generator().manual_seed(1), **kw)
    b = ext.extend(orc.denoiser(path), path, 3, 4, 2, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a.strip, b.strip)
    # n_shifts = 0 is plain generation: prior at 1 → t → 0 on the same grids
    g = torch.Generator().manual_seed(2)
    c = ext.extend(orc.denoiser(path), path, 3, 0, 2, generator=g, **kw)
    assert c.strip.shape == (3, 1, 4, 8)


def test_reconstruction_keeps_frozen_columns_exactly():
    """Columns frozen at t (β = 0 on [0, t]) never move: the reconstruction equals α x + σ z̄ there."""
    orc, path, _ = _oracle_path(8, 0.6)
    x = orc.sample(5, torch.Generator().manual_seed(3))
    t = 0.3
    keep = ext.kept_columns(path.schedule, t)
    assert 0 < int(keep.sum()) < 8
    rec = ext.reconstruct(orc.denoiser(path), path, x, t, seeds=[7, 8], steps=4)
    noised = ext.noise_to(path, x, t, torch.Generator().manual_seed(7))
    assert torch.allclose(rec[0][..., keep], noised[..., keep], atol=1e-6)
    assert float(ext.seed_diversity(rec, ~keep).min()) > 0


def test_psnr_closed_form():
    ref = torch.zeros(2, 1, 3, 4)
    x = ref + 0.1
    assert torch.allclose(ext.psnr(x, ref), torch.full((2,), 10 * math.log10(4 / 0.01), dtype=torch.float64))
    with pytest.raises(ValueError, match="no column"):
        ext.psnr(x, ref, torch.zeros(4, dtype=torch.bool))


def test_non_pixel_basis_refused():
    L = 4
    basis = bases.DCT((1, L, L))
    path = paths.DiagonalPath(basis, schedules.ColumnGamma(bases.Pixel((1, L, L)).labels()["column"], 0.7))
    with pytest.raises(ValueError, match="Pixel"):
        ext.extend(lambda *a, **k: None, path, 1, 1, 1)


def test_gap_first_zero_iff_t_at_most_b_and_seam_free_softness():
    """The window's first column is frozen at the cut iff t ≤ t_1 = b; with the smallest admissible t
    (t_lo) that is possible iff b ≥ (L − 1)/(2L − k − 1)."""
    for L in (8, 16):
        for b in (0.5, 0.52, 0.6, 0.8):
            s = column_schedule(L, b)
            for k in range(1, ext.max_shift(b, L) + 1):
                plan = ext.plan_extension(s, k)
                assert plan.t == pytest.approx(max(plan.t_lo, k * plan.dt))
                assert (plan.gap_first < 1e-9) == (plan.t <= b + 1e-9)
                assert (plan.gap_first < 1e-9) == (b >= ext.min_softness(L, k, seam_free=True) - 1e-12)


def test_column_curves_and_kept_columns():
    s = column_schedule(5, 0.5)
    df = ext.column_curves(s, torch.linspace(0, 1, 11))
    assert len(df) == 55 and set(df.column) == {1, 2, 3, 4, 5}
    row = df[(df.t == 0.5) & (df.column == 3)].iloc[0]
    m = s.marginal(torch.tensor([0.5], dtype=torch.float64))
    assert row.gamma == pytest.approx(float(column_gammas(s, 0.5)[2]))
    assert row.alpha == pytest.approx(float(m.alpha.reshape(-1, 5)[0, 2]))
    assert bool((df.beta >= 0).all())
    keep = ext.kept_columns(s, 0.5, gamma_keep=-4.0)
    assert torch.equal(keep, column_gammas(s, 0.5) <= -4.0)
    assert torch.equal(ext.kept_columns(s, 0.5), torch.tensor([True, False, False, False, False]))


def test_extension_figures_build_with_labels():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    from gdmkit.plotting import extension as extension_plots

    s = column_schedule(5, 0.5)
    figs = [extension_plots.schedule_curves({0.5: ext.column_curves(s, torch.linspace(0, 1, 11))}),
            extension_plots.strips({"a": torch.zeros(2, 1, 4, 16)}, window=4),
            extension_plots.regions(torch.zeros(2, 1, 4, 5), ext.column_regions(s, 0.5), [0.5, 0.5]),
            extension_plots.drift_lines(pd.DataFrame({"position": [0, 4] * 2, "spectrum_log_error": [0.1] * 4,
                                                      "cov_error": [0.1] * 4, "var_ratio": [1.0] * 4,
                                                      "source": ["x", "x", "y", "y"]})),
            extension_plots.sweep_map(pd.DataFrame({"b": [0.3, 0.3, 0.6, 0.6], "k": [1, 2, 1, 2],
                                                    "err": [1.0, 2.0, 0.1, 0.2]}), "err", L=8),
            extension_plots.reconstructions({"r": (torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4),
                                                   torch.zeros(2, 1, 1, 4, 4))},
                                            {"r": torch.tensor([True, False, False, False])})]
    for fig in figs[:-1]:                                   # the last one shows pictures only
        assert fig.axes
        for ax in fig.axes:
            if ax.lines:                                   # data panels; shared x axes label the outer row
                assert ax.get_ylabel()
        assert any(ax.get_xlabel() for ax in fig.axes)
    for fig in figs:
        matplotlib.pyplot.close(fig)
