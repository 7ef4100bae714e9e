"""Stationarity statistics against exact Gaussian-random-field truths."""
import math

import pytest
import torch

from gdmkit import bases, likelihood, paths, schedules, stationarity as st


def test_spectrum_normalised_and_symmetric():
    S = st.periodic_spectrum((8, 12), power=3.0, corr_length=1.5, sigma=0.5)
    assert math.isclose(float(S.mean()), 0.25, rel_tol=1e-12)
    flip = torch.roll(S.flip(0, 1), (1, 1), (0, 1))           # S(−k)
    assert torch.allclose(S, flip)
    assert math.isclose(float(st.covariance_function(S)[0, 0]), 0.25, rel_tol=1e-12)


def test_full_period_crop_is_the_circulant_covariance():
    """A crop the size of the period: C v = ifft2(S · fft2(v)), and its expected periodogram is S."""
    S = st.periodic_spectrum((6, 10))
    C = st.crop_covariance(st.covariance_function(S), (6, 10))
    v = torch.randn(6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = torch.fft.ifft2(S * torch.fft.fft2(v)).real
    assert torch.allclose((C @ v.reshape(-1)).reshape(6, 10), want, atol=1e-12)
    assert torch.allclose(st.expected_periodogram(C, (6, 10)), S, atol=1e-12)


def test_field_samples_match_crop_covariance():
    field = st.periodic_field((4, 16), corr_length=1.0)
    x = field.sample(20000, torch.Generator().manual_seed(1))[..., :5].double().reshape(20000, -1)
    C = st.crop_covariance(st.covariance_function(field.var[0]), (4, 5))
    assert float((x.T @ x / len(x) - C).abs().max()) < 6 * float(C[0, 0]) / math.sqrt(20000)


def test_fast_window_denoiser_equals_mixture_denoiser():
    c = st.covariance_function(st.periodic_spectrum((4, 16), corr_length=1.2))
    orc = st.window_oracle(c, (4, 6))
    basis = bases.Pixel((1, 4, 6))
    path = paths.DiagonalPath(basis, schedules.ColumnGamma(basis.labels()["column"], 0.5), target="eps")
    chi = torch.randn(3, 1, 4, 6, generator=torch.Generator().manual_seed(2))
    for t in (torch.tensor([0.4, 0.4, 0.4]), torch.tensor([0.1, 0.5, 0.9])):  # one time, then one per example
        fast, ref = orc.denoiser(path)(chi, t), orc.mixture.denoiser(path)(chi, t)
        assert torch.allclose(fast.x_hat, ref.x_hat, atol=1e-5) and torch.allclose(fast.v, ref.v, atol=1e-5)
        # with a gradient requested it forms the explicit gain instead of solving: same values, same Jacobian
        fast_model, ref_model = orc.denoiser(path), orc.mixture.denoiser(path)
        x64 = chi.double()
        v_f, div_f = likelihood.exact_divergence(lambda c: fast_model(c, t.double()).v, x64)
        v_r, div_r = likelihood.exact_divergence(lambda c: ref_model(c, t.double()).v, x64)
        assert torch.allclose(v_f, v_r, atol=1e-10) and torch.allclose(div_f, div_r, rtol=1e-9)
        # and the closed-form trace from diag(Σ̄ D_α K⁻¹) is that divergence, with no backward pass
        assert torch.allclose(fast_model.divergence(x64, t.double()), div_r, rtol=1e-9)


def test_window_oracle_likelihood_with_the_closed_form_divergence():
    """log_likelihood(divergence="closed_form") with the window oracle equals the autograd-exact one and,
    for a tight step, the t = 0 marginal's exact log-density N(0, α(0)² C + σ(0)² I) (GUD eq. 25)."""
    c = st.covariance_function(st.periodic_spectrum((4, 16), corr_length=1.2))
    orc = st.window_oracle(c, (4, 6))
    basis = bases.Pixel((1, 4, 6))
    # γ from −12 to 14: the t = 1 marginal is N(0, I) to e^-14, so only the solver's error remains
    path = paths.DiagonalPath(basis, schedules.ColumnGamma(basis.labels()["column"], 0.5, -12.0, 14.0),
                              target="eps")
    x = orc.sample(3, torch.Generator().manual_seed(3)).double()
    kw = dict(method="rk4", options={"step_size": 0.01})
    a = likelihood.log_likelihood(orc.denoiser(path), path.to_chi(x), path, divergence="exact", **kw)
    b = likelihood.log_likelihood(orc.denoiser(path), path.to_chi(x), path, divergence="closed_form", **kw)
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
    m0 = path.schedule.marginal(torch.zeros(1, dtype=torch.float64))
    al, sg = m0.alpha.reshape(-1).double(), m0.sigma.reshape(-1).double()
    cov0 = al[:, None] * orc.cov * al[None] + torch.diag(sg.square())
    ref = torch.distributions.MultivariateNormal(torch.zeros(24, dtype=torch.float64), cov0).log_prob(x.reshape(3, -1))
    assert float((b - ref).abs().max()) < 1e-3  # nats per example (RK4 at step 0.01: 1e-4; 0.02: 1.4e-3)


def test_lag_covariance_brute_force():
    x = torch.randn(2, 1, 5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    m = 2
    got = st.lag_covariance(x, m)
    for dy in range(m + 1):
        for j, dx in enumerate(range(-m, m + 1)):
            prods = [x[b, 0, y, u] * x[b, 0, y + dy, u + dx] for b in range(2) for y in range(5 - dy)
                     for u in range(6) if 0 <= u + dx < 6]
            assert math.isclose(float(got[dy, j]), float(sum(prods) / len(prods)), rel_tol=1e-10)
    c = st.covariance_function(st.periodic_spectrum((8, 8)))
    t = st.lag_covariance_truth(c, 2)
    assert t[0, 2] == c[0, 0] and t[1, 3] == c[1, 1] and t[0, 1] == c[0, -1]


def test_spectrum_log_error_identities():
    P = torch.rand(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) + 0.1
    bins = st.radial_bins((8, 8))
    assert float(st.spectrum_log_error(P, P, bins)) == 0.0
    assert math.isclose(float(st.spectrum_log_error(math.e * P, P, bins)), 1.0, rel_tol=1e-12)


def test_seam_statistic_detects_inserted_jumps():
    k, n_shifts, L = 3, 10, 4
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 1, 4, L + k * n_shifts, generator=g)
    clean = st.seam_statistic(x, k, n_shifts, d_ref=2.0)
    assert abs(clean["z"]) < 4 and abs(clean["joins_over_truth"] - 1) < 0.1
    jumped = x.clone()
    for m in range(1, n_shifts + 1):
        jumped[..., m * k:] += 1.0                               # a step at every join
    bad = st.seam_statistic(jumped, k, n_shifts)
    assert bad["z"] > 10 and bad["joins"] > bad["interior"] + 0.5
    assert st.seam_statistic(x, 1, n_shifts)["interior"] is None


def test_patch_statistics_zero_against_itself_and_errors():
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    s = st.patch_statistics(x, x)
    assert s["w1"] == 0 and s["patch_cov_error"] == 0 and s["spectrum_log_error"] == 0
    assert st.patch_statistics(2 * x, x)["spectrum_log_error"] == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="same image size"):
        st.patch_statistics(x, x[..., :4])
    with pytest.raises(ValueError, match="does not fit"):
        st.crop_covariance(torch.ones(4, 4), (5, 2))


@pytest.mark.parametrize("size, n_bins", [((16, 16), None), ((32, 32), None), ((16, 32), None), ((7, 9), 3),
                                          ((5, 12), None)])
def test_radial_bins_are_exact_at_the_bin_edges(size, n_bins):
    """Each frequency's bin ⌊n_bins |f| / |f|max⌋ in exact rational arithmetic (math.isqrt), including the
    frequencies that lie exactly on an edge (at 16×16, e.g. (1, 1) at |f| / |f|max · 8 = 1), where a
    floating-point floor depends on the CPU's last bit."""
    h, w = size
    nb = n_bins or max(h, w) // 2
    ky = [k if k < (h + 1) // 2 else k - h for k in range(h)]
    kx = [k if k < (w + 1) // 2 else k - w for k in range(w)]
    N = [[a * a * w * w + b * b * h * h for b in kx] for a in ky]
    n_max = max(max(row) for row in N)
    want = torch.tensor([[min(math.isqrt(nb * nb * n // n_max), nb - 1) for n in row] for row in N])
    got = st.radial_bins(size, n_bins)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    if size == (16, 16):
        on_edge = sum(math.isqrt(nb * nb * n // n_max) ** 2 * n_max == nb * nb * n for row in N for n in row)
        assert on_edge == 38 and int(got[1, 1]) == 1
