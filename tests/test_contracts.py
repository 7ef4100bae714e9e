"""Contracts between modules: one solver signature, what a Prediction carries, what a callback sees,
and the configs of paths, time samplers and losses (the protocol of gdmkit.config).

Each test states a property that other modules (generate, likelihood, train, the notebooks) rely on.
"""
from __future__ import annotations

import inspect
import json

import pytest
import torch

from gdmkit import config
from gdmkit import groupings as G
from gdmkit import paths as P
from gdmkit import sampling as SM
from gdmkit import schedules as S
from gdmkit.bases import DCT, Orthogonal, Pixel
from gdmkit.oracles import DiagonalGaussian, GaussianMixture

F64 = torch.float64
SOLVERS = [SM.euler, SM.heun, SM.euler_maruyama]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vp():
    """Gaussian data on a VP path (finite SDE), its exact model."""
    basis = Orthogonal.random(3, generator=_gen(1))
    var = torch.tensor([1.2, 0.4, 0.1], dtype=F64)
    path = P.DiagonalPath(basis, S.LinearGamma(var.log(), -var.log(), a=0.9, gamma_noise=10.0))
    return path, DiagonalGaussian(basis, torch.tensor([0.2, -0.3, 0.1], dtype=F64), var).denoiser(path)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda f: f.__name__)
def test_every_solver_has_one_signature(solver):
    """solver(model, chi, ts, *, generator=None, callback=None) -> chi."""
    params = list(inspect.signature(solver).parameters.values())
    assert [p.name for p in params] == ["model", "chi", "ts", "generator", "callback"]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:3])
    assert all(p.kind is p.KEYWORD_ONLY and p.default is None for p in params[3:])


def test_generate_hands_every_solver_the_generator_and_callback_alike():
    """No special case: generate = the prior draw, then solver(model, χ, ts, generator=, callback=)."""
    path, model = _vp()
    ts = S.uniform_grid(6)
    seen = []

    def spy(model_, chi, ts_, *, generator=None, callback=None):
        seen.append((model_, generator, callback, chi.shape))
        return chi

    cb = lambda *a: None
    gen = _gen(2)
    SM.generate(path, model, 5, ts, solver=spy, generator=gen, callback=cb, batch_size=2)
    assert [s[3][0] for s in seen] == [2, 2, 1] and all(s[0] is model and s[1] is gen and s[2] is cb
                                                         for s in seen)
    for solver in SOLVERS:
        gen = _gen(3)
        chi = path.prior_sample(5, generator=gen)
        direct = path.to_x(solver(model, chi, ts, generator=gen))
        torch.testing.assert_close(SM.generate(path, model, 5, ts, solver=solver, generator=_gen(3)), direct,
                                   rtol=0, atol=0)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda f: f.__name__)
def test_callback_sees_each_step_before_it_is_taken(solver):
    """callback(i, t, chi, pred): i = 0, 1, ...; t = ts[i]; chi = the state at t; pred = model(chi, t)."""
    path, model = _vp()
    ts = S.uniform_grid(4).double()
    calls = []
    out = solver(model, path.prior_sample(3, generator=_gen(4)).double(), ts, generator=_gen(5),
                 callback=lambda i, t, chi, pred: calls.append((i, t, chi.clone(), pred)))
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    assert [c[1] for c in calls] == ts[:-1].tolist() and all(type(c[1]) is float for c in calls)
    for i, t, chi, pred in calls:
        assert isinstance(pred, P.Prediction)
        torch.testing.assert_close(pred.v, model(chi, torch.full((3,), t, dtype=F64)).v, rtol=0, atol=0)
    assert not torch.equal(calls[-1][2], out)                     # the last state is before the last step


def _check_carries_marginal(pred: P.Prediction, c) -> None:
    assert pred.sigma is not None and pred.g2 is not None
    torch.testing.assert_close(pred.sigma.expand_as(pred.v), c.sigma.expand_as(pred.v), rtol=0, atol=0)
    torch.testing.assert_close(pred.g2.expand_as(pred.v), c.g2.expand_as(pred.v), rtol=0, atol=0)


def test_every_prediction_carries_sigma_and_g2_of_its_marginal():
    """from_u / from_eps / from_x0, path.denoiser and the oracles all report σ(t) and g(t)² (GUD eq. 9)."""
    path, model = _vp()
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    chi_t = torch.randn(3, 3, generator=_gen(6), dtype=F64)
    c = path.schedule.marginal(t)
    for convert in (P.from_u, P.from_eps, P.from_x0):
        out = torch.randn(3, 3, generator=_gen(7), dtype=F64)
        _check_carries_marginal(convert(chi_t, out, c), c)
    _check_carries_marginal(model(chi_t, t), c)
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, 3), torch.eye(3)[None])
    _check_carries_marginal(gm.denoiser(path)(chi_t, t), c)
    net = lambda x_t, state, summary: 0.5 * x_t
    for target in P.TARGETS:
        p = P.DiagonalPath(path.basis, path.schedule, target=target)
        _check_carries_marginal(p.denoiser(net)(chi_t, t), c)
    # the right-sided marginal at a kink is the one reported when the model is asked for it
    gdm = P.DiagonalPath(Pixel((2,)).double(), S.GroupwiseSchedule(G.per_element((2,))))
    half = torch.full((2,), 0.5, dtype=F64)
    x = torch.randn(2, 2, generator=_gen(8), dtype=F64)
    for side in ("left", "right"):
        _check_carries_marginal(gdm.denoiser(net)(x, half, side), gdm.schedule.marginal(half, side))
    # score uses the Prediction's own σ unless a Marginal is given
    torch.testing.assert_close(P.score(model(chi_t, t)), P.score(model(chi_t, t), c))


def _paths():
    dct = DCT((1, 4, 4))
    bands = G.frequency_bands(dct.labels()["rank"], [2, 6])
    return {"gdm-dct": P.DiagonalPath(dct, S.GroupwiseSchedule(bands), target="u", weighting="velocity"),
            "vp-scale": P.DiagonalPath(Orthogonal.random(3, generator=_gen(9)),
                                       S.LinearGamma(torch.zeros(3), torch.zeros(3), a=1.0),
                                       scale=torch.tensor([1.0, 2.0, 0.5]), target="eps"),
            "groupwise-gamma": P.DiagonalPath(Pixel((4,)), S.GroupwiseGamma(G.per_element((4,))), target="x0")}


@pytest.mark.parametrize("name", list(_paths()))
def test_configs_are_json_plus_tensors_and_rebuild_equal_objects(name):
    """to_config → split_tensors → JSON → join_tensors → from_config gives the same fingerprint."""
    path = _paths()[name]
    objects = [path, path.loss_fn(), path.loss_fn(time_sampler=P.DiscreteTimes(4)), P.UniformTimes()]
    if isinstance(path.schedule, S.GroupwiseSchedule):
        sampler = S.schedule_sampler(path.schedule.grouping, shuffle=True)
        objects.append(path.loss_fn(schedule_sampler=sampler))
    for obj in objects:
        cfg = obj.to_config()
        assert cfg["type"] == type(obj).__name__
        plain, tensors = config.split_tensors(cfg)
        back = config.from_config(config.join_tensors(json.loads(json.dumps(plain)), tensors))
        assert type(back) is type(obj) and back is not obj
        assert config.fingerprint(back.to_config()) == config.fingerprint(cfg)


def test_loss_objects_draw_schedule_times_noise_in_that_order():
    """The loss of a Loss equals path.loss on the draws made by hand in the documented order."""
    path = _paths()["gdm-dct"]
    net = lambda x_t, state, summary: torch.tanh(x_t) * state
    x = torch.randn(4, 1, 4, 4, generator=_gen(10))
    sampler = S.schedule_sampler(path.schedule.grouping, shuffle=True)
    loss = path.loss_fn(schedule_sampler=sampler, time_sampler=P.DiscreteTimes(8))
    gen = _gen(11)
    sched = sampler(gen)
    t = P.DiscreteTimes(8)(4, generator=gen)
    z = torch.randn(x.shape, generator=gen)
    expected = path.with_schedule(sched).loss(net, x, t, z)
    torch.testing.assert_close(loss(net, x, _gen(11)), expected, rtol=0, atol=0)
