"""Tests for gdmkit.paths: the diagonal Gaussian path, its targets, losses and conversions.

Checked by hand: χ_t = α χ + σ z̄ (GDM eq. 11, GUD eq. 14); GDM eq. 14–16 (an orthogonal basis
leaves the u-loss unchanged in pixel space); GDM Prop. 3.1 / App. C.1 (k = d groups: the
velocity-weighted loss is d² times the AR loss, and one Euler step per group is the AR sampler).
"""
from __future__ import annotations

import math

import pytest
import torch

from gdmkit import config
from gdmkit import groupings as G
from gdmkit import paths as P
from gdmkit import schedules as S
from gdmkit.bases import DCT, Orthogonal, Pixel
from gdmkit.sampling import generate

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class RandomNet(torch.nn.Module):
    """An arbitrary fixed network net(x_t, state, summary) -> out, nonlinear in all three inputs."""

    def __init__(self, event_shape, seed: int = 0):
        super().__init__()
        d = math.prod(event_shape)
        g = _gen(seed)
        self.event_shape = tuple(event_shape)
        self.W = torch.randn(d, 2 * d + 1, generator=g, dtype=F64) / math.sqrt(d)

    def forward(self, x_t, state, summary):
        B = x_t.shape[0]
        feats = torch.cat([x_t.reshape(B, -1).double(), state.expand_as(x_t).reshape(B, -1).double(),
                           summary.reshape(B, 1).double()], 1)
        return torch.tanh(feats @ self.W.T).reshape(B, *self.event_shape).to(x_t.dtype)


def _dct_gdm_path(**kw) -> P.DiagonalPath:
    basis = DCT((1, 4, 4)).double()
    grouping = G.frequency_bands(basis.labels()["rank"], [2, 6])
    return P.DiagonalPath(basis, S.GroupwiseSchedule(grouping), **kw)


def _vp_path(scale: bool = False, **kw) -> P.DiagonalPath:
    basis = Orthogonal.random(5, generator=_gen(3))
    log_var = torch.tensor([0.5, -0.3, -1.0, 0.2, -2.0], dtype=F64)
    sched = S.LinearGamma(log_var, -log_var, a=0.8)
    s = torch.tensor([1.5, 0.7, 2.0, 0.4, 1.1], dtype=F64) if scale else None
    return P.DiagonalPath(basis, sched, scale=s, **kw)


def test_noise_is_alpha_chi_plus_sigma_z():
    path = _vp_path()
    chi = torch.randn(4, 5, generator=_gen(1), dtype=F64)
    z = torch.randn(4, 5, generator=_gen(2), dtype=F64)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=F64)
    c = path.schedule.marginal(t)
    torch.testing.assert_close(path.noise(chi, t, z), c.alpha * chi + c.sigma * z)
    gpath = _dct_gdm_path()
    chi = torch.randn(3, 1, 4, 4, generator=_gen(1), dtype=F64)
    z = torch.randn(3, 1, 4, 4, generator=_gen(2), dtype=F64)
    t = torch.tensor([0.1, 0.5, 0.9])
    A = gpath.schedule.A(t)
    torch.testing.assert_close(gpath.noise(chi, t, z), A * chi + (1 - A) * z)   # GDM eq. 11


def test_encode_decode_round_trip_with_a_scale():
    """χ = S⁻¹Uᵀx, x = USχ; log|det(US)| = Σ log S (variance-matching prior, GUD §4.4)."""
    path = _vp_path(scale=True)
    U = path.basis.matrix()
    x = torch.randn(6, 5, generator=_gen(4), dtype=F64)
    chi = path.to_chi(x)
    torch.testing.assert_close(chi, (x @ U) / path.scale)        # row form of S⁻¹Uᵀx
    torch.testing.assert_close(path.to_x(chi), x)
    M = U @ torch.diag(path.scale)
    assert path.log_det_to_x() == pytest.approx(torch.linalg.slogdet(M).logabsdet.item(), abs=1e-12)
    assert _vp_path().log_det_to_x() == 0.0
    img = _dct_gdm_path()
    x = torch.randn(2, 1, 4, 4, generator=_gen(5), dtype=F64)
    torch.testing.assert_close(img.to_x(img.to_chi(x)), x)


def test_variance_matching_scale_is_the_coefficient_std():
    basis = Orthogonal.random(4, generator=_gen(6))
    data = torch.randn(200, 4, generator=_gen(7), dtype=F64) * torch.tensor([3.0, 1.0, 0.5, 2.0], dtype=F64)
    s = P.variance_matching_scale(basis, data)
    c = data @ basis.matrix()
    by_hand = ((c - c.mean(0)).square().sum(0) / (len(c) - 1)).sqrt()
    torch.testing.assert_close(s, by_hand)
    path = P.DiagonalPath(basis, S.LinearGamma(torch.zeros(4), torch.zeros(4), a=1.0), scale=s)
    chi = path.to_chi(data)
    torch.testing.assert_close(chi.var(0), torch.ones(4, dtype=F64))       # whitened


def test_gdm_u_loss_is_the_same_in_pixel_and_coefficient_space():
    """GDM eq. 14–16: with u_θ(x_t) = U ū_θ, ‖(x̄ − z̄) − ū‖² = ‖(x − z) − u‖² for orthogonal U.
    The network sees the pixel-space x_t = U(A x̄ + (I − A) z̄) (eq. 11, 17)."""
    path = _dct_gdm_path(target="u")
    basis, net = path.basis, RandomNet((1, 4, 4))
    seen = {}

    def recording(x_t, state, summary):
        seen["x_t"], seen["state"], seen["summary"] = x_t, state, summary
        return net(x_t, state, summary)

    x = torch.randn(5, 1, 4, 4, generator=_gen(1), dtype=F64)
    z_bar = torch.randn(5, 1, 4, 4, generator=_gen(2), dtype=F64)
    t = torch.tensor([0.05, 0.3, 0.5, 0.77, 0.99])
    loss = path.loss(recording, x, t, z_bar)
    assert loss.shape == (5,)
    A = path.schedule.A(t)
    U = basis.matrix()                                           # (16, 16), columns = basis vectors
    x_bar = (x.reshape(5, 16) @ U).reshape(5, 1, 4, 4)
    x_t_pix = ((A * x_bar + (1 - A) * z_bar).reshape(5, 16) @ U.T).reshape(5, 1, 4, 4)
    torch.testing.assert_close(seen["x_t"], x_t_pix)
    torch.testing.assert_close(seen["state"], A)
    torch.testing.assert_close(seen["summary"], 1 - A.flatten(1).mean(1))
    z_pix = (z_bar.reshape(5, 16) @ U.T).reshape(5, 1, 4, 4)
    out = net(x_t_pix, A, 1 - A.flatten(1).mean(1))
    pixel_loss = ((x - z_pix) - out).square().flatten(1).mean(1)            # eq. 16
    coeff_loss = ((x_bar - z_bar) - basis.to_coeffs(out)).square().flatten(1).mean(1)  # eq. 14
    torch.testing.assert_close(loss, pixel_loss)
    torch.testing.assert_close(loss, coeff_loss)


@pytest.mark.parametrize("target", ["u", "eps", "x0"])
@pytest.mark.parametrize("weighting", ["target", "velocity"])
def test_a_perfect_network_has_zero_loss(target, weighting):
    path = _vp_path(scale=True, target=target, weighting=weighting)
    x = torch.randn(4, 5, generator=_gen(1), dtype=F64)
    z = torch.randn(4, 5, generator=_gen(2), dtype=F64)
    t = torch.tensor([0.1, 0.4, 0.6, 0.95], dtype=F64)
    chi = path.to_chi(x)
    coeff = {"u": chi - z, "eps": z, "x0": chi}[target]
    if target == "x0":
        out = path.to_x(coeff)                                 # the clean image x
    else:
        out = path.basis.from_coeffs(coeff)                      # U applied to the χ-space target

    def perfect(x_t, state, summary):
        return out

    assert path.loss(perfect, x, t, z).abs().max().item() < 1e-12       # float64 rounding only
    wrong = lambda *a: out + 0.1
    assert path.loss(wrong, x, t, z).min().item() > 1e-6


def test_gdm_velocity_weighting_is_eq_7():
    """weighting="velocity": ‖A′(x̄ − z̄) − A′ū‖² (GDM eq. 7 with v_θ = A′u_θ, eq. 9)."""
    path = _dct_gdm_path(target="u", weighting="velocity")
    net = RandomNet((1, 4, 4), seed=1)
    x = torch.randn(4, 1, 4, 4, generator=_gen(1), dtype=F64)
    z = torch.randn(4, 1, 4, 4, generator=_gen(2), dtype=F64)
    t = torch.tensor([0.2, 0.45, 0.6, 0.9])
    A, dA = path.schedule.A(t), path.schedule.dA(t)
    chi = path.to_chi(x)
    chi_t = A * chi + (1 - A) * z
    u_hat = path.basis.to_coeffs(net(path.to_x(chi_t), A, 1 - A.flatten(1).mean(1)))
    expected = (dA * (chi - z) - dA * u_hat).square().flatten(1).mean(1)
    torch.testing.assert_close(path.loss(net, x, t, z), expected)


def _consistent(path: P.DiagonalPath, t):
    chi = torch.randn(len(t), *path.event_shape, generator=_gen(8), dtype=F64)
    z = torch.randn(len(t), *path.event_shape, generator=_gen(9), dtype=F64)
    c = path.schedule.marginal(t)
    return chi, z, c, c.alpha * chi + c.sigma * z


@pytest.mark.parametrize("which", ["vp", "gdm"])
def test_from_u_eps_x0_agree(which):
    if which == "vp":
        path, t = _vp_path(), torch.tensor([0.01, 0.3, 0.7, 1.0], dtype=F64)
    else:  # interior times where 0 < A < 1 for some groups and A ∈ {0, 1} for others
        path, t = _dct_gdm_path(), torch.tensor([0.1, 0.4, 0.6, 0.8])
    chi, z, c, chi_t = _consistent(path, t)
    preds = {"u": P.from_u(chi_t, chi - z, c), "x0": P.from_x0(chi_t, chi, c)}
    if which == "vp":
        preds["eps"] = P.from_eps(chi_t, z, c)
    v_true = c.d_alpha * chi + c.d_sigma * z                      # v = α′χ̂ + σ′ẑ
    for name, p in preds.items():
        torch.testing.assert_close(p.x_hat, chi, msg=name)
        noised = (c.sigma > 0).expand_as(z)                      # ẑ is only identifiable where σ > 0
        torch.testing.assert_close(p.z_hat[noised], z[noised], msg=name)
        torch.testing.assert_close(p.v, v_true, msg=name)
    if which == "gdm":                                          # eq. 9: v = A′u
        torch.testing.assert_close(preds["u"].v, c.d_alpha * (chi - z))


def test_from_x0_sets_z_hat_zero_where_sigma_is_zero():
    """Clean components (σ = 0): χ_t = χ carries no information on z̄, so E[z̄ | χ_t] = 0."""
    path = _dct_gdm_path()
    t = torch.tensor([0.05])
    c = path.schedule.marginal(t)
    assert bool((c.sigma == 0).any())
    chi_t = torch.randn(1, 1, 4, 4, generator=_gen(1), dtype=F64)
    p = P.from_x0(chi_t, chi_t, c)
    assert bool((p.z_hat[(c.sigma == 0)] == 0).all())


def test_from_eps_marks_x_hat_unidentifiable_where_alpha_is_zero():
    path = _dct_gdm_path()
    c = path.schedule.marginal(torch.tensor([0.95]))
    chi_t = torch.randn(1, 1, 4, 4, generator=_gen(1), dtype=F64)
    p = P.from_eps(chi_t, chi_t, c)
    assert bool(p.x_hat[c.alpha == 0].isnan().all()) and not bool(p.x_hat[c.alpha > 0].isnan().any())


def test_score_is_minus_z_hat_over_sigma():
    path = _vp_path()
    t = torch.tensor([0.2, 0.5, 0.8], dtype=F64)
    chi, z, c, chi_t = _consistent(path, t)
    p = P.from_eps(chi_t, z, c)
    torch.testing.assert_close(P.score(p, c), -z / c.sigma)


def test_predict_maps_the_network_output_through_the_basis():
    path = _vp_path(scale=True, target="x0")
    net = RandomNet((5,), seed=2)
    chi_t = torch.randn(3, 5, generator=_gen(1), dtype=F64)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=F64)
    s = path.schedule
    out = net(path.to_x(chi_t), s.state(t), s.summary(t))
    expected = P.from_x0(chi_t, path.to_chi(out), s.marginal(t))
    got = path.denoiser(net)(chi_t, t)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    # a scalar t is broadcast over the batch
    torch.testing.assert_close(path.predict(net, chi_t, torch.tensor(0.5)).v,
                               path.predict(net, chi_t, torch.full((3,), 0.5)).v)


def test_prop_3_1_velocity_loss_is_d_squared_times_the_ar_loss():
    """GDM Prop. 3.1 / App. C.1, eq. 22–26: k = d, uniform intervals, t = l/d. The velocity-weighted
    loss (a mean over the d components; × d for the sum) equals d² (x_l − x_θ)² with
    x_θ = (x_t)_l + u_l, for any network. Our group g = d − l is the one with t_end = l/d."""
    d = 5
    path = P.DiagonalPath(Pixel((d,)).double(), S.GroupwiseSchedule(G.per_element((d,))), target="u",
                  weighting="velocity")
    net = RandomNet((d,), seed=4)
    x = torch.randn(d, d, generator=_gen(1), dtype=F64)
    z = torch.randn(d, d, generator=_gen(2), dtype=F64)
    ls = torch.arange(1, d + 1)
    t = ls.float() / d
    loss_sum = path.loss(net, x, t, z) * d
    A = path.schedule.A(t)
    x_t = A * x + (1 - A) * z
    u = net(x_t, A, path.schedule.summary(t))
    for b, l in enumerate(ls.tolist()):
        g = d - l
        # (x_t)_{≤l} = z (noise) and (x_t)_{>l} = x (paper indexing): ours, groups ≥ g are noise
        torch.testing.assert_close(x_t[b, g:], z[b, g:])
        torch.testing.assert_close(x_t[b, :g], x[b, :g])
        x_theta = x_t[b, g] + u[b, g]
        assert loss_sum[b].item() == pytest.approx(d ** 2 * (x[b, g] - x_theta).item() ** 2, rel=1e-5)


class ARNet(torch.nn.Module):
    """A hand-made AR model in GDM form: x_θ_i = f_i(generated components), u = x_θ − x_t.

    The components already generated are those with A = 1 (App. C.1: (x_t)_{>l} = x_{>l})."""

    def __init__(self, d: int):
        super().__init__()
        self.W = torch.randn(d, d, generator=_gen(11), dtype=F64)
        self.b = torch.randn(d, generator=_gen(12), dtype=F64)

    def x_theta(self, x_known):
        return torch.sin(x_known @ self.W.T) + self.b

    def forward(self, x_t, state, summary):
        known = (state == 1).to(x_t.dtype)
        return self.x_theta(x_t * known) - x_t


def test_app_c1_one_euler_step_per_group_is_the_ar_sampler():
    """App. C.1: with N_j = 1, Euler on eq. 9 is "for l = d..1: x_l ← x_θ(x_{>l})"."""
    d = 4
    sched = S.GroupwiseSchedule(G.per_element((d,)))
    path = P.DiagonalPath(Pixel((d,)).double(), sched, target="u")
    net = ARNet(d)
    ts = sched.time_grid([1] * d)
    torch.testing.assert_close(ts, torch.linspace(1, 0, d + 1))
    latents = torch.randn(3, d, generator=_gen(5), dtype=F64)
    x = generate(path, net, 3, ts, latents=latents)
    # the AR procedure by hand: our group 0 first, each from the ones before it
    ar = torch.zeros(3, d, dtype=F64)
    for g in range(d):
        known = torch.zeros(d, dtype=F64)
        known[:g] = 1
        ar[:, g] = net.x_theta(ar * known)[:, g]
    torch.testing.assert_close(x, ar, atol=1e-6, rtol=0)
    # "the initialization does not affect the final samples"
    other = generate(path, net, 3, ts, latents=5 * torch.randn(3, d, generator=_gen(6), dtype=F64))
    torch.testing.assert_close(other, ar, atol=1e-5, rtol=0)


def test_time_samplers():
    """UniformTimes draws U(0, 1); DiscreteTimes(n) draws l/n, l ~ U{1..n}: the generator's own numbers."""
    t = P.uniform_times(1000, generator=_gen(1))
    assert isinstance(P.uniform_times, P.UniformTimes)
    assert t.shape == (1000,) and bool(((t >= 0) & (t < 1)).all())
    assert torch.equal(t, P.UniformTimes()(1000, generator=_gen(1)))
    assert torch.equal(t, torch.rand(1000, generator=_gen(1)))                   # the generator's draws
    sample = P.discrete_times(4)
    assert sample == P.DiscreteTimes(4)
    t = sample(400, generator=_gen(2))
    assert set(t.tolist()) == {0.25, 0.5, 0.75, 1.0}
    torch.testing.assert_close(t, torch.randint(1, 5, (400,), generator=_gen(2)).float() / 4, rtol=0, atol=0)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="DiscreteTimes needs an integer n >= 1"):
            P.DiscreteTimes(bad)


def _loss_by_hand(path, net, x, generator, time_sampler, schedule_sampler=None):
    """What a Loss must compute: schedule, then t, then z̄, all drawn in that order from ``generator``."""
    if schedule_sampler is not None:
        path = path.with_schedule(schedule_sampler(generator))
    t = time_sampler(x.shape[0], generator=generator)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return path.loss(net, x, t, z)


def test_loss_fn_is_reproducible_and_uses_the_schedule_sampler():
    path = _dct_gdm_path()
    net = RandomNet((1, 4, 4), seed=3)
    x = torch.randn(6, 1, 4, 4, generator=_gen(1), dtype=F64)
    fn = path.loss_fn()
    assert isinstance(fn, P.Loss) and fn.path is path and fn.schedule_sampler is None
    assert fn.time_sampler == P.UniformTimes()
    a, b, c = fn(net, x, _gen(7)), fn(net, x, _gen(7)), fn(net, x, _gen(8))
    assert a.shape == (6,) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, _loss_by_hand(path, net, x, _gen(7), P.uniform_times))
    drawn = []

    def sampler(generator):
        s = S.GroupwiseSchedule(G.random_order(path.schedule.grouping, generator=generator))
        drawn.append(s)
        return s

    fn = path.loss_fn(schedule_sampler=sampler, time_sampler=P.discrete_times(3))
    out = fn(net, x, _gen(9))
    assert len(drawn) == 1 and out.shape == (6,) and bool(torch.isfinite(out).all())
    assert torch.equal(out, _loss_by_hand(path, net, x, _gen(9), P.DiscreteTimes(3), sampler))
    with pytest.raises(ValueError, match="the schedule_sampler .* has no to_config"):
        fn.to_config()                                           # a plain function cannot be described
    with pytest.raises(ValueError, match="time_sampler must be callable"):
        P.Loss(path, time_sampler=3)
    with pytest.raises(ValueError, match="Loss needs a paths.DiagonalPath"):
        P.Loss(path.schedule)


def _all_buffers(path: P.DiagonalPath) -> dict:
    return {**{"basis." + k: v for k, v in path.basis.named_buffers()},
            **{"schedule." + k: v for k, v in path.schedule.named_buffers()}}


def test_to_returns_a_moved_copy_and_leaves_the_path_alone():
    path = _vp_path(scale=True)
    basis, sched = path.basis, path.schedule
    before = {k: (v, v.clone()) for k, v in _all_buffers(path).items()}
    moved = path.to("meta")
    assert moved.basis is not basis and moved.schedule is not sched
    assert all(b.device.type == "meta" for b in _all_buffers(moved).values())
    assert moved.scale.device.type == "meta"
    # the original keeps its own modules, the same buffer objects, on the CPU, with the same values
    assert path.basis is basis and path.schedule is sched and path.scale.device.type == "cpu"
    now = _all_buffers(path)
    assert now.keys() == before.keys() and len(now) >= 2
    for k, (obj, values) in before.items():
        assert now[k] is obj and now[k].device.type == "cpu" and torch.equal(now[k], values), k
    # a copy on the same device computes exactly what the original does
    same = path.to("cpu")
    assert same.basis is not basis
    x = torch.randn(3, 5, generator=_gen(1), dtype=F64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    assert torch.equal(same.to_chi(x), path.to_chi(x))
    assert all(torch.equal(a, b) for a, b in zip(same.schedule.marginal(t), path.schedule.marginal(t)))
    same.basis.to("meta")                                        # moving the copy in place later ...
    assert path.basis.U.device.type == "cpu"                     # ... leaves the original alone


def _rebuilt_equal(path: P.DiagonalPath) -> None:
    cfg = path.to_config()
    assert cfg["type"] == "DiagonalPath" and set(cfg) == {"type", "basis", "schedule", "scale", "target",
                                                          "weighting"}
    assert config.fingerprint(cfg["basis"]) == config.fingerprint(path.basis.to_config())   # nested
    assert config.fingerprint(cfg["schedule"]) == config.fingerprint(path.schedule.to_config())
    back = config.from_config(cfg)
    assert isinstance(back, P.DiagonalPath) and back is not path
    assert config.fingerprint(back.to_config()) == config.fingerprint(cfg)
    x = torch.randn(3, *path.event_shape, generator=_gen(1), dtype=F64)
    t = torch.tensor([0.1, 0.5, 0.8], dtype=F64)
    assert torch.equal(back.to_chi(x), path.to_chi(x))
    for a, b in zip(back.schedule.marginal(t), path.schedule.marginal(t)):
        assert torch.equal(a, b)
    assert (back.target, back.weighting) == (path.target, path.weighting)


def test_path_config_round_trip_and_fingerprint():
    for path in (_vp_path(scale=True, target="eps"), _dct_gdm_path(weighting="velocity"), _vp_path()):
        _rebuilt_equal(path)
    # two separately built equal paths share a fingerprint; any parameter changes it
    fp = lambda p: config.fingerprint(p.to_config())
    assert fp(_vp_path(scale=True)) == fp(_vp_path(scale=True))
    base = _vp_path(scale=True)
    variants = [_vp_path(), _vp_path(scale=True, target="x0"), _vp_path(scale=True, weighting="velocity"),
                base.with_schedule(S.LinearGamma(torch.zeros(5), torch.zeros(5), a=0.8)),
                P.DiagonalPath(Orthogonal.random(5, generator=_gen(4)), base.schedule, scale=base.scale),
                P.DiagonalPath(base.basis, base.schedule, scale=base.scale * 1.01)]
    assert len({fp(v) for v in variants} | {fp(base)}) == len(variants) + 1
    with pytest.raises(ValueError, match="expects a config with type 'DiagonalPath'"):
        P.DiagonalPath.from_config({"type": "Loss"})


def test_loss_config_round_trip_computes_the_same_losses():
    path = _dct_gdm_path()
    net = RandomNet((1, 4, 4), seed=3)
    x = torch.randn(6, 1, 4, 4, generator=_gen(1), dtype=F64)
    samplers = [(None, P.UniformTimes()), (None, P.DiscreteTimes(5)),
                (S.schedule_sampler(path.schedule.grouping, shuffle=True), P.uniform_times)]
    for schedule_sampler, time_sampler in samplers:
        loss = path.loss_fn(schedule_sampler=schedule_sampler, time_sampler=time_sampler)
        cfg = loss.to_config()
        assert cfg["type"] == "Loss" and set(cfg) == {"type", "path", "schedule_sampler", "time_sampler"}
        assert cfg["time_sampler"] == time_sampler.to_config()
        assert (cfg["schedule_sampler"] is None) == (schedule_sampler is None)
        back = config.from_config(cfg)
        assert isinstance(back, P.Loss) and back.time_sampler == time_sampler
        assert config.fingerprint(back.to_config()) == config.fingerprint(cfg)
        assert torch.equal(back(net, x, _gen(11)), loss(net, x, _gen(11)))
    assert config.from_config(P.DiscreteTimes(7).to_config()) == P.DiscreteTimes(7)
    fp = lambda obj: config.fingerprint(obj.to_config())
    assert fp(P.DiscreteTimes(7)) != fp(P.DiscreteTimes(8))
    assert fp(P.DiscreteTimes(7)) == fp(P.discrete_times(7))


def test_path_rejects_bad_arguments():
    basis = Orthogonal.random(3, generator=_gen(1))
    sched = S.LinearGamma(torch.zeros(3), torch.zeros(3), a=1.0)
    with pytest.raises(ValueError, match="unknown target 'v'"):
        P.DiagonalPath(basis, sched, target="v")
    with pytest.raises(ValueError, match="weighting must be 'target' or 'velocity'"):
        P.DiagonalPath(basis, sched, weighting="snr")
    with pytest.raises(ValueError, match=r"schedule event shape \(4,\) differs from the basis' \(3,\)"):
        P.DiagonalPath(basis, S.LinearGamma(torch.zeros(4), torch.zeros(4), a=1.0))
    with pytest.raises(ValueError, match=r"scale must have the event shape \(3,\)"):
        P.DiagonalPath(basis, sched, scale=torch.ones(4))
    with pytest.raises(ValueError, match="scale .* must be positive"):
        P.DiagonalPath(basis, sched, scale=torch.tensor([1.0, 0.0, 2.0]))
