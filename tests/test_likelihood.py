"""Tests for gdmkit.likelihood: the probability-flow ODE log-likelihood of Gaussian data equals the
exact log-density, Hutchinson's estimator is unbiased, and bits/dim is re-derived by hand.

The exact denoiser of Gaussian data is written out here (x̂ = μ̄ + Σ̄ D_α C⁻¹ (χ_t − α μ̄) with
C = D_α Σ̄ D_α + D_σ², one d × d solve per call), independent of gdmkit.oracles.
"""
from __future__ import annotations

import math

import pytest
import torch

from gdmkit import groupings as G
from gdmkit import likelihood as L
from gdmkit import paths as P
from gdmkit import schedules as S
from gdmkit.bases import Orthogonal, Pixel
from gdmkit.oracles import DiagonalGaussian

F64 = torch.float64
D = 4
LN2 = math.log(2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(mean: bool = True):
    g = _gen(0)
    A = torch.randn(D, D, generator=g, dtype=F64)
    cov = A @ A.T / D + 0.3 * torch.eye(D, dtype=F64)
    mu = torch.randn(D, generator=g, dtype=F64) if mean else torch.zeros(D, dtype=F64)
    x = mu + torch.randn(6, D, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
    return mu, cov, x


def _gaussian_model(path: P.DiagonalPath, mu: torch.Tensor, cov: torch.Tensor):
    """Exact model(χ, t, side) -> Prediction for x ~ N(μ, Σ) under ``path`` (χ = S⁻¹Uᵀx)."""
    s = torch.ones(D, dtype=F64) if path.scale is None else path.scale.double()
    M = torch.diag(1 / s) @ path.basis.matrix().T
    mb, Sb = M @ mu, M @ cov @ M.T

    def model(chi, t, side="left"):
        assert bool((t == t[0]).all())
        c = path.schedule.marginal(t, side)
        a, sg = c.alpha[0].double(), c.sigma[0].double()
        C = a[:, None] * Sb * a[None, :] + torch.diag(sg ** 2)
        x_hat = mb + (chi - a * mb) @ torch.linalg.solve(C, a[:, None] * Sb)
        return P.from_x0(chi, x_hat, c)
    return model


def _log_normal(x: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; μ, Σ) = −½ [(x − μ)ᵀ Σ⁻¹ (x − μ) + log det Σ + d log 2π], shape (B,)."""
    r = x - mu
    return -0.5 * ((r @ torch.linalg.inv(cov) * r).sum(1) + torch.logdet(cov) + D * math.log(2 * math.pi))


def _bpd_error(log_p, exact):
    return ((log_p - exact) / (D * LN2)).abs().max().item()


def _gdm_path() -> P.DiagonalPath:
    return P.DiagonalPath(Pixel((D,)).double(), S.GroupwiseSchedule(G.from_index_sets((D,), [[0, 2], [1, 3]])))


def _column_path(basis=None) -> P.DiagonalPath:
    """GUD eq. 21 over the D components, noised enough (γ_max = 14) that χ_1 ≈ N(0, I)."""
    basis = Pixel((D,)).double() if basis is None else basis
    return P.DiagonalPath(basis, S.ColumnGamma(torch.arange(D), b=0.5, gamma_min=-12.0, gamma_max=14.0))


def test_gdm_two_groups_exact_divergence_matches_the_exact_density():
    mu, cov, x = _gaussian()
    path = _gdm_path()
    exact = _log_normal(x, mu, cov)
    model = _gaussian_model(path, mu, cov)
    ll = L.log_likelihood(model, path.to_chi(x), path, divergence="exact")
    assert ll.shape == (6,)
    assert _bpd_error(ll, exact) < 0.01


def test_vp_linear_gamma_exact_divergence_matches_the_exact_density():
    """γ̃_noise = 12 makes χ_1 ≈ N(0, I) for centred data (GUD App. B removes the data mean)."""
    mu, cov, x = _gaussian(mean=False)
    log_var = torch.diagonal(cov).log()
    path = P.DiagonalPath(Pixel((D,)).double(), S.LinearGamma(log_var, -log_var, a=1.0, gamma_noise=12.0))
    exact = _log_normal(x, mu, cov)
    model = _gaussian_model(path, mu, cov)
    ll = L.log_likelihood(model, path.to_chi(x), path, divergence="exact")
    assert _bpd_error(ll, exact) < 0.01
    # the remaining gap is the path's t = 0 end (γ̃_denoise = −7, not −∞) and the solver: against the
    # exact density of χ_0 = α(0) x + σ(0) z̄, N(α μ, D_α Σ D_α + D_σ²), a tight solve agrees to 1e-5
    c = path.schedule.marginal(torch.zeros(1))
    a, s = c.alpha[0].double(), c.sigma[0].double()
    marginal0 = _log_normal(x, a * mu, a[:, None] * cov * a[None, :] + torch.diag(s ** 2))
    assert _bpd_error(ll, marginal0) < 0.01
    tight = L.log_likelihood(model, path.to_chi(x), path, divergence="exact", rtol=1e-8, atol=1e-8)
    assert _bpd_error(tight, marginal0) < 1e-5


def test_whitened_pca_path_with_the_library_oracle_in_data_bits_per_dim():
    """Variance-matching prior (GUD §4.4): χ = S⁻¹Uᵀx with U the eigenbasis, S² its eigenvalues, so
    log p_x = log p_χ − Σ log S; γ from log Σ = 0 (whitened) and l = −log λ (GUD §5.1)."""
    mu, cov, x = _gaussian(mean=False)
    lam, U = torch.linalg.eigh(cov)
    basis = Orthogonal(U)
    path = P.DiagonalPath(basis, S.LinearGamma(torch.zeros(D), -lam.log(), a=1.0, gamma_noise=12.0),
                  scale=lam.sqrt())
    model = DiagonalGaussian(basis, torch.zeros(D, dtype=F64), lam).denoiser(path)
    bpd = L.data_bits_per_dim(model, x, path, divergence="exact")
    exact = L.bits_per_dim(_log_normal(x, mu, cov), D)
    assert (bpd - exact).abs().max().item() < 0.01
    # without the change of variables the answer would be off by Σ log S / (d ln 2)
    assert abs(path.log_det_to_x()) / (D * LN2) > 0.05


def test_column_schedule_is_integrated_between_its_kinks():
    """A piecewise-linear γ (GUD eq. 21) with the kinks handled by Schedule.breakpoints()."""
    mu, cov, x = _gaussian(mean=False)
    path = _column_path()
    # t_i = b(L − i)/(L − 1) = 1/2, 1/3, 1/6, 0 and t_i + 1 − b = 1, 5/6, 2/3, 1/2
    assert path.schedule.breakpoints() == pytest.approx([1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6], abs=1e-7)
    exact = _log_normal(x, mu, cov)
    ll = L.log_likelihood(_gaussian_model(path, mu, cov), path.to_chi(x), path, divergence="exact")
    assert _bpd_error(ll, exact) < 0.01


def test_hutchinson_is_unbiased_within_its_standard_error():
    """64 copies of one point, one Rademacher probe each: 64 independent estimates of the same value."""
    mu, cov, x = _gaussian(mean=False)
    path = _column_path()
    model = _gaussian_model(path, mu, cov)
    chi0 = path.to_chi(x[:1]).expand(64, D).contiguous()
    kw = dict(rtol=1e-5, atol=1e-5)
    exact = L.log_likelihood(model, chi0[:1], path, divergence="exact", **kw).item()
    est = L.log_likelihood(model, chi0, path, divergence="hutchinson", n_probes=1, generator=_gen(1), **kw)
    se = est.std().item() / math.sqrt(len(est))
    assert est.std().item() > 1e-3, "a non-diagonal Jacobian gives a noisy estimator"
    assert abs(est.mean().item() - exact) < 4 * se
    many = L.log_likelihood(model, chi0[:8], path, divergence="hutchinson", n_probes=16, generator=_gen(2), **kw)
    assert many.std().item() < 0.5 * est.std().item()        # variance ∝ 1/n_probes: std ÷ 4
    assert abs(many.mean().item() - exact) < 4 * many.std().item() / math.sqrt(8)


def test_hutchinson_is_exact_for_a_diagonal_jacobian():
    """Data independent across the path's coordinates: ∂v/∂χ is diagonal and εᵀJε = Σ J_ii ε_i² = tr J
    for Rademacher ε, whatever the probes."""
    basis = Orthogonal.random(D, generator=_gen(3))
    var = torch.tensor([2.0, 0.5, 1.0, 0.1], dtype=F64)
    path = _column_path(basis)
    model = DiagonalGaussian(basis, torch.zeros(D, dtype=F64), var).denoiser(path)
    chi0 = torch.randn(5, D, generator=_gen(4), dtype=F64)
    exact = L.log_likelihood(model, chi0, path, divergence="exact")
    hutch = L.log_likelihood(model, chi0, path, divergence="hutchinson", n_probes=3, generator=_gen(5))
    torch.testing.assert_close(hutch, exact, atol=1e-10, rtol=0)
    expected = (-0.5 * (chi0.square() / var + var.log() + math.log(2 * math.pi))).sum(1)
    assert ((exact - expected) / (D * LN2)).abs().max().item() < 0.01


def test_hutchinson_is_reproducible_with_a_generator():
    mu, cov, x = _gaussian()
    path = _gdm_path()
    model = _gaussian_model(path, mu, cov)
    chi0 = path.to_chi(x[:3])
    kw = dict(divergence="hutchinson", rtol=1e-4, atol=1e-4)
    a = L.log_likelihood(model, chi0, path, generator=_gen(7), **kw)
    b = L.log_likelihood(model, chi0, path, generator=_gen(7), **kw)
    c = L.log_likelihood(model, chi0, path, generator=_gen(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bits_per_dim_by_hand():
    """Uniformly dequantised 8-bit data scaled to [−1, 1]: the uniform density (1/2)^d is 8 bits/dim;
    in general bpd = −log p_x/(d ln 2) + log2(bins / range) (the Jacobian of the rescaling)."""
    d = 12
    log_uniform = torch.tensor([d * math.log(0.5)])
    assert L.bits_per_dim(log_uniform, d).item() == pytest.approx(8.0, abs=1e-12)
    assert L.bits_per_dim(torch.tensor([0.0]), d, bins=256, data_range=1.0).item() == pytest.approx(8.0)
    # 5 bins on [0, 5): width-1 bins, no rescaling: bpd = −log2 p
    lp = torch.tensor([-3.0, -7.5])
    expected = torch.tensor([3.0, 7.5]) / (d * LN2)
    torch.testing.assert_close(L.bits_per_dim(lp, d, bins=5, data_range=5.0), expected)
    # dequantised uniform on the data range, any bins: log2(bins)
    for bins, rng in ((2, 2.0), (16, 0.5)):
        assert L.bits_per_dim(torch.tensor([-d * math.log(rng)]), d, bins=bins,
                              data_range=rng).item() == pytest.approx(math.log2(bins))


def test_likelihood_bad_arguments():
    mu, cov, x = _gaussian()
    path = _gdm_path()
    model = _gaussian_model(path, mu, cov)
    with pytest.raises(ValueError, match="divergence must be 'hutchinson', 'exact' or 'closed_form', got 'trace'"):
        L.log_likelihood(model, x, path, divergence="trace")
    with pytest.raises(ValueError, match="needs a model with a divergence"):  # a network has no closed form
        L.log_likelihood(model, x, path, divergence="closed_form")
    with pytest.raises(ValueError, match="n_probes must be >= 1"):
        L.log_likelihood(model, x, path, n_probes=0)


# ------------------------------------------------------------------ closed form, warp, divergence, options
def _diag_gaussian(mean: bool):
    """A Gaussian diagonal in a random orthogonal basis (mean optional), and 6 exact samples."""
    g = _gen(4)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    var = torch.tensor([2.0, 0.5, 0.1, 0.02], dtype=F64)
    m = torch.randn(D, generator=g, dtype=F64) if mean else torch.zeros(D, dtype=F64)
    gauss = DiagonalGaussian(Orthogonal(Q), m, var)
    return gauss, gauss.basis.from_coeffs(m + var.sqrt() * torch.randn(6, D, generator=g, dtype=F64))


@pytest.mark.parametrize("power", [None, 0.5])
@pytest.mark.parametrize("whiten", [False, True])
@pytest.mark.parametrize("mean", [False, True])
def test_closed_form_is_what_the_ode_returns_with_the_exact_score(power, whiten, mean):
    """gaussian_flow_log_likelihood against the ODE with the exact denoiser and exact divergence, tight solve.

    With App. B's s(t) (power 0.5) s′ is singular at t = 0 and 1; integrating in t with the end-clamped s′
    missed ≈ 0.01 nats here, which the integration in u = s(t) removes."""
    gauss, x = _diag_gaussian(mean)
    scale = gauss.var.sqrt() if whiten else None
    log_var = torch.zeros(D) if whiten else gauss.var.log()
    sched = S.LinearGamma(log_var, -gauss.var.log(), a=0.8, gamma_denoise=-3.0, gamma_noise=3.0, power=power)
    path = P.DiagonalPath(gauss.basis, sched, scale=scale, target="eps")
    ex = L.gaussian_flow_log_likelihood(gauss, path, x)
    ll = L.log_likelihood(gauss.denoiser(path), path.to_chi(x), path, divergence="exact", rtol=1e-9, atol=1e-9)
    assert (ll - path.log_det_to_x() - ex.ode).abs().max().item() < 1e-5
    assert torch.allclose(ex.endpoint, ex.t0 + ex.t1) and torch.allclose(ex.ode - ex.data, ex.endpoint)
    assert torch.allclose(ex.data, gauss.log_prob(x))
    # t0 re-derived: the t = 0 marginal N(α(0) μ, α(0)² λ + σ(0)²) per χ component, minus log|det S|
    c = path.schedule.marginal(torch.zeros(1, dtype=F64), "right")
    a0, s0 = c.alpha[0].double(), c.sigma[0].double()
    s = torch.ones(D, dtype=F64) if scale is None else scale
    mu, lam = gauss.mean / s, gauss.var / s**2
    chi = path.to_chi(x)
    v0 = a0**2 * lam + s0**2
    m0 = (-0.5 * ((chi - a0 * mu) ** 2 / v0 + v0.log() + math.log(2 * math.pi))).sum(1) - path.log_det_to_x()
    assert torch.allclose(ex.t0, m0 - ex.data)
    if whiten and not mean:  # unit-variance centred χ: VP keeps N(0, I) at every t, both ends are exact
        assert ex.endpoint.abs().max().item() < 1e-10
    else:
        assert ex.endpoint.abs().max().item() > 1e-4


def test_closed_form_refuses_a_gaussian_diagonal_in_another_basis():
    gauss, x = _diag_gaussian(False)
    path = P.DiagonalPath(Pixel((D,)).double(), S.LinearGamma(gauss.var.log(), -gauss.var.log(), a=1.0))
    with pytest.raises(ValueError, match="different one"):
        L.gaussian_flow_log_likelihood(gauss, path, x)


def _coupled(chi):
    """A nonlinear map with a full Jacobian: v_i = tanh(Σ_j W_ij χ_j) + χ_i²."""
    W = torch.arange(1.0, 1.0 + chi[0].numel() ** 2, dtype=chi.dtype).reshape(chi[0].numel(), -1).sin()
    flat = chi.flatten(1)
    return (torch.tanh(flat @ W.T) + flat ** 2).reshape(chi.shape)


@pytest.mark.parametrize("chunk", [None, 1, 3, 100])
def test_exact_divergence_is_the_jacobian_trace(chunk):
    chi = torch.randn(5, 2, 3, generator=_gen(1), dtype=F64)
    v, div = L.exact_divergence(_coupled, chi, chunk=chunk)
    J = torch.autograd.functional.jacobian(lambda c: _coupled(c[None])[0].flatten(), chi[2])
    assert torch.allclose(div[2], torch.diagonal(J.reshape(6, 6)).sum())
    assert torch.equal(v, _coupled(chi)) and not v.requires_grad and not div.requires_grad


def test_hutchinson_with_all_sign_patterns_is_the_trace():
    """Averaging εᵀJε over every ε ∈ {±1}^d cancels the off-diagonal terms exactly."""
    chi = torch.randn(3, 3, generator=_gen(2), dtype=F64)
    signs = torch.tensor([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=F64)
    probes = signs[:, None, :].expand(8, 3, 3)
    _, div = L.hutchinson_divergence(_coupled, chi, probes)
    assert torch.allclose(div, L.exact_divergence(_coupled, chi)[1])


@pytest.mark.parametrize("method", ["dopri5", "rk45", "tsit5"])
def test_adaptive_solve_steps_across_kinks_and_never_past_the_end(method):
    """One adaptive solve with each kink a jump: the network is called on [0, 1] only (torchdiffeq's own
    initial-step trial point and its last step both overshoot t = 1), each call is on the side of its
    step's kink (a wrong side costs O(step x jump) at every kink), and the answer is the exact t = 0
    marginal's density to solver accuracy."""
    mu, cov, x = _gaussian(mean=False)
    path = _column_path()
    base, calls = _gaussian_model(path, mu, cov), []

    def model(chi, t, side="left"):
        calls.append(float(t[0]))
        return base(chi, t, side)
    c = path.schedule.marginal(torch.zeros(1))
    a, s = c.alpha[0].double(), c.sigma[0].double()
    marginal0 = _log_normal(x, a * mu, a[:, None] * cov * a[None, :] + torch.diag(s ** 2))
    st = {}
    ll = L.log_likelihood(model, path.to_chi(x), path, divergence="exact", rtol=1e-8, atol=1e-8, stats=st,
                          method=method)
    assert 0.0 <= min(calls) and max(calls) <= 1.0
    assert st["nfe"] == len(calls) and st["segments"] == 6
    assert _bpd_error(ll, marginal0) < 1e-5


def test_solver_options_probes_and_stats_reach_the_solver():
    mu, cov, x = _gaussian(mean=False)
    path = _gdm_path()
    model = _gaussian_model(path, mu, cov)
    st, sides = {}, set()

    def logged(chi, t, side="left"):
        if float(t[0]) == 0.5:
            sides.add(side)
        return model(chi, t, side)
    L.log_likelihood(logged, path.to_chi(x), path, method="rk4", options={"step_size": 0.25}, stats=st)
    # rk4 takes 4 evaluations per step; two segments (the groups' intervals) of two steps of 0.25 each
    assert st == {"nfe": 2 * 2 * 4, "segments": 2}
    # at the kink t = 1/2 the first segment's last stage takes the left limit, the second's first the right
    assert sides == {"left", "right"}
    probes = torch.ones(2, *x.shape, dtype=F64)
    a = L.log_likelihood(model, path.to_chi(x), path, probes=probes)
    b = L.log_likelihood(model, path.to_chi(x), path, probes=probes[:1])
    assert torch.allclose(a, b)  # the same probe twice averages to itself
    with pytest.raises(ValueError, match="probes must have shape"):
        L.log_likelihood(model, path.to_chi(x), path, probes=torch.ones(2, 3, D))
    with pytest.raises(ValueError, match="rtol and atol"):
        L.log_likelihood(model, path.to_chi(x), path, rtol=0.0)
    with pytest.raises(ValueError, match="takes the options first_step and max_steps"):
        L.log_likelihood(model, path.to_chi(x), path, method="tsit5", options={"step_size": 0.1})
    st = {}
    L.log_likelihood(model, path.to_chi(x), path, method="rk45", options={"first_step": 0.5}, stats=st)
    # the first step given, so no starting-step trial: one evaluation at the start of each segment (the
    # groups' intervals) and 6 new stages per attempted step (FSAL)
    assert st["nfe"] == st["segments"] + 6 * (st["accepted"] + st["rejected"]) and st["segments"] == 2


@pytest.mark.parametrize("path", [_gdm_path(), _column_path()], ids=["gdm-groups", "column"])
def test_closed_form_divergence_is_the_autograd_trace_and_integrates_the_same(path):
    """The oracle's model.divergence (oracles.x0_divergence) equals the Jacobian trace by backward passes,
    at one time for the batch, per-example times, and on the GDM path where a group not yet started has
    σ = 0 (ẑ = 0 there: only α′ G_ii remains); and the ODE log-likelihood with it equals the exact one."""
    basis = path.basis
    gauss = DiagonalGaussian(basis, torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=F64),
                             torch.tensor([2.0, 0.5, 0.1, 0.02], dtype=F64))
    model = gauss.denoiser(path)
    chi = torch.randn(5, D, generator=_gen(7), dtype=F64)
    for t in (torch.full((5,), 0.3, dtype=F64), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=F64)):
        _, ref = L.exact_divergence(lambda c: model(c, t).v, chi)
        assert torch.allclose(model.divergence(chi, t), ref, rtol=1e-10, atol=1e-12)
    if isinstance(path.schedule, S.GroupwiseSchedule):  # group 2 still clean at t = 0.25
        assert bool((path.schedule.marginal(torch.tensor([0.25], dtype=F64)).sigma == 0).any())
    x = gauss.sample(4, _gen(8)).double()
    kw = dict(method="rk4", options={"step_size": 0.05})
    a = L.log_likelihood(model, path.to_chi(x), path, divergence="exact", **kw)
    b = L.log_likelihood(model, path.to_chi(x), path, divergence="closed_form", **kw)
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_gamma_schedule_summary_scale_keeps_the_time_embedding_smooth_for_the_ode():
    """GammaSchedule.summary_scale (1, GUD App. B) against the scale 1000 that suits t in [0, 1]: (1/d) Σ γ_i
    spans ~10, so at 1000 a network with live output weights oscillates in t and the adaptive solve needs
    many more evaluations at the same tolerance."""
    from gdmkit import nets

    d = 16
    lv = torch.linspace(-3.0, 1.0, d)
    sc = S.LinearGamma(lv, -lv, a=1.0)
    assert sc.summary_scale == 1.0 and S.GroupwiseSchedule(G.single((d,))).summary_scale == 1000.0
    path = P.DiagonalPath(Pixel((d,)), sc, target="eps")
    x = torch.randn(8, d, generator=torch.Generator().manual_seed(0)) * (0.5 * lv).exp()
    nfe = {}
    for scale in (sc.summary_scale, 1000.0):
        torch.manual_seed(0)
        net = nets.make_net("mlp", (d,), hidden=64, depth=2, emb_dim=32, emb_scale=scale)
        torch.nn.init.normal_(net.out.weight, std=0.1, generator=torch.Generator().manual_seed(1))
        st = {}
        L.log_likelihood(path.denoiser(net.eval()), path.to_chi(x),
                         path, rtol=1e-5, atol=1e-5, method="rk45", stats=st,
                         generator=torch.Generator().manual_seed(2))
        nfe[scale] = st["nfe"]
    assert nfe[1.0] * 4 < nfe[1000.0], nfe
