"""gdmkit.gud: GUD §5.1's schedule families, Fig. 2 settings, dequantisation and the exact-oracle check."""
import math

import pytest
import torch

from gdmkit import bases, gud, oracles, paths, schedules


def _variance(d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.linspace(-4.0, 1.5, d)[torch.randperm(d, generator=g)]).reshape(1, 3, 4)


def _curves(sched, n=21):
    return gud.noising_curves(sched, torch.linspace(0, 1, n, dtype=torch.float64))


def test_fig2_settings_follow_their_definitions():
    var = _variance()
    lv = var.double().log()
    s = gud.fig2_schedules(var, gamma_denoise=-3.0, gamma_noise=3.0)
    a, b, c, d = (_curves(s[k]) for k in gud.FIG2_SETTINGS)
    flat = lambda v: v.flatten(1)  # noqa: E731
    # (a) and (d): one γ(t) for every component; (b), (d): one log SNR(t); (c) has (a)'s log SNR
    for curve in (a, d):
        assert torch.allclose(flat(curve["gamma"]), flat(curve["gamma"])[:, :1].expand(-1, 12), atol=1e-12)
    for curve in (b, d):
        snr = flat(curve["log_snr"])
        assert torch.allclose(snr, snr[:, :1].expand(-1, 12), atol=1e-12)
    assert torch.allclose(c["log_snr"], a["log_snr"], atol=1e-12)
    # by hand, eq. 20 at a = 0: γ_min,i = γ̃_d + log Σ_i; Δγ = γ̃_n − γ̃_d
    assert torch.allclose(b["gamma"][0], -3.0 + lv, atol=1e-12)
    assert torch.allclose(b["gamma"][-1], 3.0 + lv, atol=1e-12)
    # eq. 19 in every setting
    for curve in (a, b, c, d):
        assert abs(float(curve["log_snr"][0].min()) - 3.0) < 1e-12
        assert abs(float(curve["log_snr"][-1].max()) + 3.0) < 1e-12
        assert torch.allclose(curve["sigma"].square(), torch.sigmoid(curve["gamma"]), atol=1e-12)


def test_fig2_refuses_zero_variance():
    var = _variance()
    var[0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="positive"):
        gud.fig2_schedules(var)


def test_softness_family_whitened_keeps_the_order_and_a_one_is_standard():
    var = _variance()
    for whiten in (False, True):
        fam = gud.softness_family(var, whiten=whiten, a_range=(0.4, 1.6), power=None)
        s = fam.member(a=1.0)
        assert torch.allclose(s.order, -var.double().log())
        assert torch.equal(s.log_var, torch.zeros_like(s.log_var)) if whiten else torch.allclose(
            s.log_var, var.double().log())
        g = torch.Generator().manual_seed(1)
        draws = [fam.draw(g)["a"] for _ in range(50)]
        assert 0.4 <= min(draws) and max(draws) <= 1.6
    unw = gud.softness_family(var, whiten=False, power=None).member(a=1.0)
    gam = unw.gamma(torch.tensor([0.3], dtype=torch.float64))[0].flatten()
    assert torch.allclose(gam, gam[:1].expand_as(gam), atol=1e-12)  # standard diffusion: one γ(t)


def test_ordering_range_matches_the_ranges_and_the_family_interpolates():
    var = _variance()
    lv = var.double().log()
    k = torch.linspace(0.0, 5.0, 12, dtype=torch.float64).reshape(1, 3, 4)
    kappa, delta = gud.ordering_range(lv, k)
    l1 = (k + delta) / kappa
    assert math.isclose(float(l1.min()), float((-lv).min()), abs_tol=1e-12)
    assert math.isclose(float(l1.max()), float((-lv).max()), abs_tol=1e-12)
    assert torch.allclose(l1, schedules.ordering_fourier(lv, k, 1.0))  # the library's Fourier ordering
    fam = gud.ordering_family(lv, k, power=None)
    assert torch.allclose(fam.member(a=1.0, r=0.0).order, -lv)
    assert torch.allclose(fam.member(a=1.0, r=1.0).order, l1)
    assert torch.allclose(fam.member(a=0.7, r=0.25).order, 0.75 * -lv + 0.25 * l1)
    with pytest.raises(ValueError, match="vary"):
        gud.ordering_range(lv, torch.ones_like(k))


def test_dequantize_levels_fills_each_cell_and_refuses_off_grid_data():
    x = (torch.randint(0, 17, (200, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float() / 8 - 1)
    y = gud.dequantize_levels(x, 17, generator=torch.Generator().manual_seed(1))
    assert float((y - x).abs().max()) <= 1 / 16 + 1e-6
    assert torch.equal(((y.double() + 1) * 8).round(), ((x.double() + 1) * 8).round())
    assert (y - x).std() > 0.02  # noise fills the cell (std of U(−1/16, 1/16) is 0.036)
    y2 = gud.dequantize_levels(x, 17, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, y2)
    with pytest.raises(ValueError, match="grid"):
        gud.dequantize_levels(x + 0.01, 17)


def test_levels_bits_per_dim_of_the_uniform_density_is_log2_levels():
    d, L = 10, 17
    step = 2 / (L - 1)
    log_p = torch.tensor([d * -math.log(L * step)])  # uniform over the L cells of width Δ
    assert torch.allclose(gud.levels_bits_per_dim(log_p, d, L), torch.tensor([math.log2(L)]), atol=1e-5)


def test_fitted_gaussian_is_the_data_gaussian():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g,
                                                                            dtype=torch.float64) + 0.3
    pca = bases.PCA.fit(x)
    fit = gud.fitted_gaussian(pca)
    ref = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T))
    assert torch.allclose(fit.log_prob(x[:20]), ref.log_prob(x[:20]), atol=1e-8)


@pytest.mark.parametrize("whiten", [False, True])
def test_exact_flow_check_agrees_and_whitening_removes_the_endpoint_part(whiten):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g) * torch.tensor([2.0, 1.0, 0.5, 0.2, 0.1])
    x = x - x.mean(0)
    pca = bases.PCA.fit(x, whiten=whiten)
    gauss = gud.fitted_gaussian(pca)
    var = pca.labels()["variance"]
    sched = gud.softness_family(var, whiten=whiten, power=None).member(a=0.6)
    path = paths.DiagonalPath(pca, sched, scale=pca.scale, target="eps")
    out = gud.exact_flow_check(gauss, path, x[:8], divergence="exact", rtol=1e-8, atol=1e-8)
    assert out["max_abs_err"] < 1e-3
    if whiten:  # every marginal is N(0, I): the ODE returns the data's exact log-density
        assert float(out["endpoint"].abs().max()) < 1e-8
    else:
        assert float(out["endpoint"].abs().max()) > 1e-4


def test_exact_flow_check_on_a_random_field():
    grf = oracles.GaussianRandomField(4, 1)
    x = grf.sample(4, torch.Generator().manual_seed(0))
    lv, k = grf.var.log(), grf.basis.labels()["frequency"].double()
    sched = gud.ordering_family(lv, k, power=0.5).member(a=1.3, r=0.5)
    out = gud.exact_flow_check(grf, paths.DiagonalPath(grf.basis, sched, target="eps"), x, divergence="exact",
                               rtol=1e-8, atol=1e-8)
    assert out["max_abs_err"] < 1e-3


def test_warped_grid_is_uniform_in_s():
    t = gud.warped_grid(10, 0.5)
    assert t[0] == 1 and t[-1] == 0 and bool((t[1:] < t[:-1]).all())
    s, _ = schedules.time_reparam(t.double(), 0.5)
    assert torch.allclose(s, torch.linspace(1, 0, 11, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(gud.warped_grid(4, None), torch.linspace(1, 0, 5))
    with pytest.raises(ValueError):
        gud.warped_grid(0, 0.5)
