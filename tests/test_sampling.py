"""Tests for gdmkit.sampling, driven by the exact oracles.

Moments of generated samples are compared with the mixture's exact mean and covariance within a few
standard errors estimated from the samples themselves; solver accuracy is measured against the exact
flow map of Gaussian data, χ_t = α_t m + √(α_t² v + σ_t²) ξ (the probability-flow ODE keeps the
standardised coordinate ξ fixed), so no golden numbers are involved.
"""
from __future__ import annotations


import pytest
import torch

from gdmkit import groupings as G
from gdmkit import paths as P
from gdmkit import sampling as SM
from gdmkit import schedules as S
from gdmkit.bases import Orthogonal, Pixel
from gdmkit.oracles import DiagonalGaussian, GaussianMixture

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mixture() -> GaussianMixture:
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    means = torch.tensor([[-1.5, 0.5], [1.0, 1.5], [1.0, -1.5]], dtype=F64)
    covs = torch.tensor([[[0.30, 0.10], [0.10, 0.20]],
                         [[0.20, -0.05], [-0.05, 0.30]],
                         [[0.25, 0.00], [0.00, 0.15]]], dtype=F64)
    return GaussianMixture(weights, means, covs)


def _gdm_path() -> P.DiagonalPath:
    """GDM with k = d = 2 in a rotated basis: one coefficient after the other (Fig. 1a)."""
    return P.DiagonalPath(Orthogonal.random(2, generator=_gen(1)), S.GroupwiseSchedule(G.per_element((2,))))


def _vp_path(gm: GaussianMixture) -> P.DiagonalPath:
    """GUD linear schedule at a = 1 (standard diffusion), noised enough that χ_1 ≈ N(0, I)."""
    log_var = torch.diagonal(gm.mean_cov()[1]).log()
    return P.DiagonalPath(Pixel((2,)).double(), S.LinearGamma(log_var, -log_var, a=1.0, gamma_noise=12.0))


def _assert_moments(x: torch.Tensor, gm: GaussianMixture, extra: float = 0.0) -> None:
    """Sample mean and covariance within 4 standard errors (+ ``extra`` for the discretisation)."""
    x = x.double()
    n = len(x)
    m, cov = gm.mean_cov()
    dev = x - x.mean(0)
    se_mean = (dev.var(0) / n).sqrt()
    prods = dev[:, :, None] * dev[:, None, :]                       # (n, d, d)
    se_cov = (prods.var(0) / n).sqrt()                              # SE of each covariance entry
    err_mean = (x.mean(0) - m).abs()
    err_cov = (prods.mean(0) - cov).abs()
    assert bool((err_mean < 4 * se_mean + extra).all()), (err_mean, se_mean)
    assert bool((err_cov < 4 * se_cov + extra).all()), (err_cov, se_cov)


# Each call of the mixture oracle costs milliseconds on a busy CPU, so the moment tests use few steps:
# Heun's bias at these step counts, and Euler's on the VP path, are well below the 4-SE band
# (checked against 400-step Heun references when the tests were written); Euler on the GDM path's
# piecewise-linear A(t) needs ~10× more steps for the same bias (first order, stiff near σ → 0).
@pytest.mark.parametrize("which,solver,steps", [("gdm", SM.heun, [8, 8]), ("vp", SM.euler, 40),
                                                ("vp", SM.heun, 10)])
def test_oracle_ode_reproduces_mixture_moments(which, solver, steps):
    gm = _mixture()
    path = _gdm_path() if which == "gdm" else _vp_path(gm)
    ts = path.schedule.time_grid(steps)
    x = SM.generate(path, gm.denoiser(path), 1500, ts, solver=solver, generator=_gen(2))
    assert x.shape == (1500, 2)
    _assert_moments(x, gm, extra=0.01)


def test_euler_maruyama_reproduces_mixture_moments():
    """EM's weak error is O(Δt): at 40 steps its bias was ≤ 0.034 on the covariance (20 000 samples,
    3 seeds), hence an allowance of 0.04 on top of 4 standard errors."""
    gm = _mixture()
    path = _vp_path(gm)
    x = SM.generate(path, gm.denoiser(path), 1000, S.uniform_grid(40), solver=SM.euler_maruyama,
                    generator=_gen(4))
    _assert_moments(x, gm, extra=0.04)


def _gaussian_case():
    """Gaussian data diagonal in a rotated basis, on a float64 VP path; the exact flow map."""
    basis = Orthogonal.random(3, generator=_gen(5))
    m = torch.tensor([0.5, -1.0, 0.2], dtype=F64)
    v = torch.tensor([2.0, 0.3, 0.05], dtype=F64)
    sched = S.LinearGamma(v.log(), -v.log(), a=0.7, gamma_noise=6.0).double()
    path = P.DiagonalPath(basis, sched)
    model = DiagonalGaussian(basis, m, v).denoiser(path)
    chi1 = torch.randn(8, 3, generator=_gen(6), dtype=F64)

    def flow(t_from: float, t_to: float, chi: torch.Tensor) -> torch.Tensor:
        c0, c1 = (sched.marginal(torch.tensor([t], dtype=F64)) for t in (t_from, t_to))
        xi = (chi - c0.alpha * m) / (c0.alpha ** 2 * v + c0.sigma ** 2).sqrt()
        return c1.alpha * m + (c1.alpha ** 2 * v + c1.sigma ** 2).sqrt() * xi

    return model, chi1, flow


def test_heun_beats_euler_and_both_converge_at_their_order():
    model, chi1, flow = _gaussian_case()
    exact = flow(1.0, 0.0, chi1)
    err = {}
    for name, solver in (("euler", SM.euler), ("heun", SM.heun)):
        for n in (10, 20, 40):
            out = solver(model, chi1, S.uniform_grid(n).double())
            err[name, n] = (out - exact).abs().max().item()
    for n in (10, 20, 40):
        assert err["heun", n] < 0.2 * err["euler", n], err
    # first order: error halves with twice the steps; second order: quarters
    assert 1.6 < err["euler", 20] / err["euler", 40] < 2.5, err
    assert 3.0 < err["heun", 20] / err["heun", 40] < 5.0, err


def test_encode_inverts_generate_on_a_fine_grid():
    """Forward ODE (encoding, GDM §4.5) then backward ODE with the same grid returns the data.

    Heun's round-trip error is O(h²): 7e-3 at 15 steps per group on this mixture, hence 2e-2."""
    gm = _mixture()
    x0 = gm.sample(16, generator=_gen(7)).double()
    path = _gdm_path()                                   # kinks: the one-sided derivatives matter
    model = gm.denoiser(path)
    ts = path.schedule.time_grid([15, 15])
    chi1 = SM.encode(model, path.to_chi(x0), ts, solver=SM.heun)    # given decreasing: reversed
    back = SM.generate(path, model, 16, ts, solver=SM.heun, latents=chi1)
    assert (back - x0).abs().max().item() < 2e-2
    # encode is the forward flow: on Gaussian data it converges (second order) to the exact latent
    gmodel, chi1, flow = _gaussian_case()
    chi0 = flow(1.0, 0.0, chi1)
    err = [(SM.encode(gmodel, chi0, S.uniform_grid(n).double(), solver=SM.heun) - chi1).abs().max().item()
           for n in (40, 80)]
    assert err[0] < 2e-2 and 3.0 < err[0] / err[1] < 5.0, err


def test_exact_flow_round_trip_sanity():
    """The reference flow map itself is invertible and is the identity at equal times."""
    _, chi1, flow = _gaussian_case()
    torch.testing.assert_close(flow(0.0, 1.0, flow(1.0, 0.0, chi1)), chi1)
    torch.testing.assert_close(flow(0.3, 0.3, chi1), chi1)


def _cheap():
    """A Gaussian oracle on a VP path: cheap, for tests about the plumbing rather than accuracy."""
    basis = Orthogonal.random(2, generator=_gen(20))
    var = torch.tensor([1.5, 0.2], dtype=F64)
    path = P.DiagonalPath(basis, S.LinearGamma(var.log(), -var.log(), a=1.0, gamma_noise=12.0))
    return path, DiagonalGaussian(basis, torch.tensor([0.3, -0.2], dtype=F64), var).denoiser(path)


def test_nfe_counting():
    path, model = _cheap()
    chi = path.prior_sample(4, generator=_gen(8)).double()
    ts = S.uniform_grid(7)
    for solver, per_step in ((SM.euler, 1), (SM.heun, 2)):
        counter = SM.CountingModel(model)
        solver(counter, chi, ts)
        assert counter.nfe == per_step * 7
    counter = SM.CountingModel(model)
    SM.euler_maruyama(counter, chi, ts, generator=_gen(9))
    assert counter.nfe == 7
    counter = SM.CountingModel(model)
    SM.generate(path, counter, 4, ts, solver=SM.heun, generator=_gen(9))
    assert counter.nfe == 14


def test_same_seed_same_samples_different_seed_different():
    path, model = _cheap()
    ts = S.uniform_grid(10)
    for solver in (SM.euler, SM.euler_maruyama):
        a = SM.generate(path, model, 16, ts, solver=solver, generator=_gen(10))
        b = SM.generate(path, model, 16, ts, solver=solver, generator=_gen(10))
        c = SM.generate(path, model, 16, ts, solver=solver, generator=_gen(11))
        assert torch.equal(a, b) and not torch.allclose(a, c)
    # the SDE noise comes from the generator as well: same latents, different generators
    latents = path.prior_sample(16, generator=_gen(12))
    a = SM.generate(path, model, 16, ts, solver=SM.euler_maruyama, generator=_gen(1), latents=latents)
    b = SM.generate(path, model, 16, ts, solver=SM.euler_maruyama, generator=_gen(2), latents=latents)
    assert not torch.allclose(a, b)


def test_euler_maruyama_last_step_adds_no_noise_and_needs_decreasing_grid():
    """With one step, EM is deterministic: χ + Δt (v + ½ g² ẑ/σ) (GUD eq. 9, no noise at the end)."""
    gm = _mixture()
    path = _vp_path(gm)
    model = gm.denoiser(path)
    chi = path.prior_sample(5, generator=_gen(13)).double()
    ts = torch.tensor([0.6, 0.4])
    a = SM.euler_maruyama(model, chi, ts, generator=_gen(1))
    b = SM.euler_maruyama(model, chi, ts, generator=_gen(2))
    assert torch.equal(a, b)
    t0, t1 = float(ts[0]), float(ts[1])
    tv = torch.full((5,), t0, dtype=F64)
    p, c = model(chi, tv), path.schedule.marginal(tv)
    # reverse SDE drift f − g² ∇log p with f = (α′/α)χ, ∇log p = −ẑ/σ
    drift = c.d_log_alpha * chi + c.g2 * p.z_hat / c.sigma
    torch.testing.assert_close(a, chi + (t1 - t0) * drift)
    with pytest.raises(ValueError, match="ts must decrease strictly"):
        SM.euler_maruyama(model, chi, torch.tensor([0.2, 0.6]))


def test_euler_maruyama_on_a_gdm_path_is_refused_and_on_groupwise_gamma_finite():
    """Rectified flow: g² = −2A′(1 − A)/A is infinite at A = 0, where the first group starts at t = 1;
    the same groups on a VP path (GroupwiseGamma) have a finite SDE."""
    basis = Pixel((2,)).double()
    path = P.DiagonalPath(basis, S.GroupwiseSchedule(G.per_element((2,))))
    data = DiagonalGaussian(basis, torch.zeros(2, dtype=F64), torch.full((2,), 0.5, dtype=F64))
    model = data.denoiser(path)
    with pytest.raises(ValueError, match="infinite diffusion at t = 1.*use an ODE solver"):
        SM.generate(path, model, 4, path.schedule.time_grid([10, 10]), solver=SM.euler_maruyama,
                    generator=_gen(16))
    vp = P.DiagonalPath(basis, S.GroupwiseGamma(G.per_element((2,))))
    x = SM.generate(vp, data.denoiser(vp), 4, vp.schedule.time_grid([10, 10]), solver=SM.euler_maruyama,
                    generator=_gen(16))
    assert bool(torch.isfinite(x).all()), x


def test_euler_maruyama_takes_sigma_and_g2_from_the_prediction():
    """The SDE's σ and g² are those the model reports: doubling g² in the Prediction changes the step
    by exactly Δt · ½ g² ẑ/σ (GUD eq. 9), and a Prediction without them is refused."""
    path, model = _cheap()
    chi = path.prior_sample(3, generator=_gen(30)).double()
    ts = torch.tensor([0.7, 0.5], dtype=F64)
    doubled = lambda c, t, side="left": model(c, t, side)._replace(g2=2 * model(c, t, side).g2)
    a, b = SM.euler_maruyama(model, chi, ts), SM.euler_maruyama(doubled, chi, ts)
    p = model(chi, torch.full((3,), 0.7, dtype=F64))
    torch.testing.assert_close(b - a, -0.2 * 0.5 * p.g2 * p.z_hat / p.sigma)
    bare = lambda c, t, side="left": P.Prediction(*model(c, t, side)[:3])
    with pytest.raises(ValueError, match="needs sigma and g2 in the model's Prediction"):
        SM.euler_maruyama(bare, chi, ts)
    SM.euler(bare, chi, ts)                                # the ODE solvers need only v


def test_callback_and_trajectory_recorder():
    gm = _mixture()
    path = _gdm_path()
    ts = path.schedule.time_grid([3, 2])
    cb, frames = SM.trajectory_recorder(path, every=2)
    seen = []
    SM.generate(path, gm.denoiser(path), 4, ts, generator=_gen(14),
                callback=lambda i, t, chi, pred: (seen.append((i, t)), cb(i, t, chi, pred)))
    assert [i for i, _ in seen] == list(range(5))
    assert [t for _, t in seen] == pytest.approx(ts[:-1].tolist())
    assert len(frames) == 3 and all(isinstance(f, SM.Frame) for f in frames)
    assert [f.t for f in frames] == pytest.approx(ts[:-1:2].tolist())
    assert frames[0].x_t.shape == (4, 2) and bool(torch.isfinite(frames[0].x_hat).all())
    t, x_t, x_hat = frames[1]                                   # still unpacks like a tuple
    assert t == frames[1].t and x_t is frames[1].x_t
    # coords="chi" keeps the solver's coordinates: decoding them gives the data-space frames
    cb_chi, frames_chi = SM.trajectory_recorder(path, every=2, coords="chi")
    cb_x, frames_x = SM.trajectory_recorder(path, every=2)
    SM.generate(path, gm.denoiser(path), 4, ts, generator=_gen(14),
                callback=lambda *a: (cb_chi(*a), cb_x(*a)))
    for fc, fx in zip(frames_chi, frames_x):
        torch.testing.assert_close(path.to_x(fc.x_t), fx.x_t)
    with pytest.raises(ValueError, match="coords must be 'x'"):
        SM.trajectory_recorder(path, coords="pixels")
    with pytest.raises(ValueError, match="every must be a positive integer"):
        SM.trajectory_recorder(path, every=0)


def test_per_group_steps():
    for k, total in ((3, 10), (4, 4), (5, 17)):
        steps = SM.per_group_steps(k, total)
        assert len(steps) == k and sum(steps) == total and min(steps) >= 1 and max(steps) - min(steps) <= 1
    with pytest.raises(ValueError, match="at least one step per group: total = 2 < k = 3"):
        SM.per_group_steps(3, 2)


def test_generate_wraps_a_network_with_the_path():
    """A torch.nn.Module is wrapped by path.denoiser: same result as passing the model."""
    path = P.DiagonalPath(Pixel((2,)).double(), S.GroupwiseSchedule(G.per_element((2,))), target="x0")

    class Net(torch.nn.Module):
        def forward(self, x_t, state, summary):
            return 0.5 * x_t + state

    net = Net()
    ts = path.schedule.time_grid([2, 2])
    latents = torch.randn(3, 2, generator=_gen(15), dtype=F64)
    a = SM.generate(path, net, 3, ts, latents=latents)
    b = SM.generate(path, path.denoiser(net), 3, ts, latents=latents)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bad", [S.uniform_grid(4).flip(0), torch.linspace(0.9, 0.0, 5),
                                 torch.linspace(1.0, 0.1, 5), S.uniform_grid(4)[None],
                                 torch.tensor([1.0, float("nan"), 0.0]), torch.tensor([1.0]),
                                 torch.tensor([1.0, 0.2, 0.5, 0.0])],
                         ids=["increasing", "starts below 1", "stops above 0", "2-D", "non-finite", "one time",
                              "not monotone"])
def test_generate_refuses_a_grid_that_is_not_decreasing_from_1_to_0(bad):
    path, model = _cheap()
    with pytest.raises(ValueError, match=r"strictly decreasing 1-D grid with ts\[0\] = 1.*sampling\.encode"):
        SM.generate(path, model, 4, bad, generator=_gen(1))


def test_generate_refuses_bad_sizes():
    path, model = _cheap()
    good = S.uniform_grid(4)
    with pytest.raises(ValueError, match="generate needs n >= 1 samples, got n = 0"):
        SM.generate(path, model, 0, good)
    with pytest.raises(ValueError, match="n = 3 but latents hold 4 samples"):
        SM.generate(path, model, 3, good, latents=path.prior_sample(4, generator=_gen(2)))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        SM.generate(path, model, 4, good, batch_size=0)
    assert SM.generate(path, model, 4, good.double(), generator=_gen(1)).shape == (4, 2)   # float64 grid


def test_solvers_refuse_unusable_grids():
    path, model = _cheap()
    chi = path.prior_sample(2, generator=_gen(3)).double()
    for solver in (SM.euler, SM.heun, SM.euler_maruyama):
        with pytest.raises(ValueError, match="1-D time grid with at least 2 times"):
            solver(model, chi, torch.ones(2, 2))
        with pytest.raises(ValueError, match="non-finite times"):
            solver(model, chi, torch.tensor([1.0, float("inf")]))
        with pytest.raises(ValueError, match="strictly monotone"):
            solver(model, chi, torch.tensor([1.0, 0.5, 0.5, 0.0]))


# ---------------------------------------------------------------- groupwise freezing (GDM eq. 10)

def _mixture4() -> GaussianMixture:
    g = _gen(40)
    A = torch.randn(2, 4, 4, generator=g, dtype=F64)
    covs = A @ A.mT / 4 + 0.2 * torch.eye(4, dtype=F64)
    means = torch.randn(2, 4, generator=g, dtype=F64)
    return GaussianMixture(torch.tensor([0.6, 0.4], dtype=F64), means, covs)


def _three_groups(basis=None) -> P.DiagonalPath:
    """k = 3 uniform intervals [2/3, 1], [1/3, 2/3], [0, 1/3]: the ends 1/3, 2/3 round in float32."""
    basis = Pixel((4,)) if basis is None else basis
    return P.DiagonalPath(basis, S.GroupwiseSchedule(G.from_index_sets((4,), [[0, 2], [1], [3]])))


def _moving(model, mask: torch.Tensor, speed: float = 0.05):
    """The model with a constant extra velocity on ``mask``: those components move at every step."""
    def moved(chi, t, side="left"):
        p = model(chi, t, side)
        return p._replace(v=p.v + speed * mask.to(p.v))
    return moved


@pytest.mark.parametrize("solver", [SM.euler, SM.heun])
def test_groupwise_freezing_holds_for_the_exact_oracle(solver):
    path = _three_groups()
    model = _mixture4().denoiser(path)
    grid = path.schedule.time_grid([3, 2, 2])
    z = path.prior_sample(6, generator=_gen(41))
    cb, frames = SM.trajectory_recorder(path)
    x0 = SM.generate(path, model, 6, grid, solver=solver, latents=z, callback=cb)
    check = SM.groupwise_freezing(path, frames, z, x0)
    assert check.keeps_latent == (True, True, True) and check.frozen_after == (True, True, True)
    assert check.holds and check.n_states == len(grid) - 1 == 7
    # the same verdict from a {t: state} mapping (the notebooks' form), and the groups did move inside
    assert SM.groupwise_freezing(path, {f.t: f.x_t for f in frames}, z, x0) == check
    assert not torch.equal(x0, z)
    for j in range(3):
        m = path.schedule.grouping.mask(j)
        assert not torch.equal(x0[:, m], z[:, m])


def test_groupwise_freezing_detects_a_group_that_moves_outside_its_interval():
    path = _three_groups()
    model = _mixture4().denoiser(path)
    grid = path.schedule.time_grid([3, 2, 2])
    z = path.prior_sample(6, generator=_gen(42))
    grouping = path.schedule.grouping
    # group 0 (generated first) keeps moving after its interval ends: not frozen
    cb, frames = SM.trajectory_recorder(path)
    x0 = SM.generate(path, _moving(model, grouping.mask(0)), 6, grid, latents=z, callback=cb)
    check = SM.groupwise_freezing(path, frames, z, x0)
    assert check.frozen_after == (False, True, True) and check.keeps_latent == (True, True, True)
    assert not check.holds
    # group 2 (generated last) moves from the start: it leaves its latent early
    cb, frames = SM.trajectory_recorder(path)
    x0 = SM.generate(path, _moving(model, grouping.mask(2)), 6, grid, latents=z, callback=cb)
    check = SM.groupwise_freezing(path, frames, z, x0)
    assert check.keeps_latent == (True, True, False) and check.frozen_after == (True, True, True)
    # a change by one ulp on one sample counts (bitwise)
    cb, frames = SM.trajectory_recorder(path)
    x0 = SM.generate(path, model, 6, grid, latents=z, callback=cb)
    clean = list(frames)
    late = frames[-1].x_t.clone()
    late[0, 0] = torch.nextafter(late[0, 0], torch.tensor(9.0))          # group 0, frozen by then
    frames[-1] = frames[-1]._replace(x_t=late)
    assert SM.groupwise_freezing(path, frames, z, x0).frozen_after == (False, True, True)
    # the state at the float32 grid time 1/3, where group 1's interval ends, is checked too: the times
    # are compared in the states' dtype, as the sampler compared them (float32(1/3) > 1/3)
    i = next(i for i, f in enumerate(frames) if f.t == float(torch.tensor(1 / 3)))
    edge = frames[i].x_t.clone()
    edge[0, 1] = torch.nextafter(edge[0, 1], torch.tensor(9.0))          # group 1 = component 1
    frames = clean
    frames[i] = frames[i]._replace(x_t=edge)
    assert SM.groupwise_freezing(path, frames, z, x0).frozen_after == (True, False, True)


def test_groupwise_freezing_in_chi_coordinates_and_on_groupwise_gamma():
    """Another basis: χ states (coords="chi") against path.schedule; the data-space path is refused."""
    path = _three_groups(Orthogonal.random(4, generator=_gen(43)))
    model = _mixture4().denoiser(path)
    grid = path.schedule.time_grid([2, 2, 2])
    z = path.prior_sample(5, generator=_gen(44))
    cb, frames = SM.trajectory_recorder(path, coords="chi")
    chi0 = SM.euler(model, z, grid, callback=cb)
    assert SM.groupwise_freezing(path.schedule, frames, z, chi0).holds
    with pytest.raises(ValueError, match="Orthogonal-basis path are sets of coefficients.*coords='chi'"):
        SM.groupwise_freezing(path, frames, z, chi0)
    vp = P.DiagonalPath(Pixel((4,)), S.GroupwiseGamma(path.schedule.grouping))
    cb, frames = SM.trajectory_recorder(vp)
    x0 = SM.generate(vp, _mixture4().denoiser(vp), 5, grid, latents=z, callback=cb)
    assert SM.groupwise_freezing(vp, frames, z, x0).holds


def test_groupwise_freezing_refuses_bad_input():
    path = _three_groups()
    z = torch.zeros(2, 4)
    frames = [SM.Frame(1.0, z, z)]
    with pytest.raises(ValueError, match="no recorded states"):
        SM.groupwise_freezing(path, [], z, z)
    with pytest.raises(ValueError, match="needs group intervals .* got LinearGamma"):
        SM.groupwise_freezing(S.LinearGamma(torch.zeros(4), torch.zeros(4), a=1.0), frames, z, z)
    with pytest.raises(ValueError, match=r"final has shape \(3, 4\) but the latents \(2, 4\)"):
        SM.groupwise_freezing(path, frames, z, torch.zeros(3, 4))
