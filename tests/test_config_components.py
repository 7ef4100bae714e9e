"""Configs of bases, groupings, schedules and schedule samplers (gdmkit.config protocol).

For every class: ``config.from_config(x.to_config())`` rebuilds an object that computes bit for bit
the same; every single constructor parameter changes ``config.fingerprint``; two separately built
equal objects share one fingerprint; and the config survives ``split_tensors`` + JSON + ``join_tensors``.
"""
from __future__ import annotations

import json

import pytest
import torch

from gdmkit import bases as B
from gdmkit import config
from gdmkit import groupings as G
from gdmkit import schedules as S

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n: int = 40, seed: int = 1) -> torch.Tensor:
    x = torch.randn(n, 3, 8, 8, generator=_gen(seed), dtype=F64)
    return x + 2 * torch.cumsum(torch.cumsum(x, dim=-1), dim=-2) / 8  # correlated pixels


def _json_round_trip(cfg):
    """What a checkpoint does: tensors to a table, the rest to JSON text, and back."""
    plain, tensors = config.split_tensors(cfg)
    return config.join_tensors(json.loads(json.dumps(plain)), tensors)


# ------------------------------------------------------------------------------------------------
# bases: a default builder and, per constructor parameter, a builder that changes only that one
# ------------------------------------------------------------------------------------------------

def _pca_parts():
    p = B.PCA.fit(_data(), whiten=True)
    return dict(U=p.U, mean=p.mean, eigenvalues=p.eigenvalues, variance=p.labels()["variance"],
                whiten=True, eps=1e-4)


def _pca(**change):
    return B.PCA(**{**_pca_parts(), **change})


BASES = {
    "Pixel": (lambda: B.Pixel((3, 8, 8)), {"event_shape": lambda: B.Pixel((3, 8, 4))}),
    "Orthogonal": (lambda: B.Orthogonal.random(6, _gen(0)),
                   {"matrix": lambda: B.Orthogonal.random(6, _gen(1))}),
    "DCT": (lambda: B.DCT((3, 8, 8)), {"shape": lambda: B.DCT((1, 8, 8)),
                                       "method": lambda: B.DCT((3, 8, 8), method="fft")}),
    "GaussianBlur": (lambda: B.GaussianBlur((3, 8, 8), sigma=1.0),
                     {"shape": lambda: B.GaussianBlur((3, 8, 4), sigma=1.0),
                      "sigma": lambda: B.GaussianBlur((3, 8, 8), sigma=1.5)}),
    "Fourier": (lambda: B.Fourier((3, 8, 8)), {"shape": lambda: B.Fourier((3, 4, 8))}),
    "PCA": (_pca, {
        "U": lambda: _pca(U=_pca_parts()["U"][:, [1, 0, *range(2, 64)]]),   # two directions swapped
        "mean": lambda: _pca(mean=_pca_parts()["mean"] + 1),
        "eigenvalues": lambda: _pca(eigenvalues=_pca_parts()["eigenvalues"] * 2),
        "variance": lambda: _pca(variance=_pca_parts()["variance"] * 2),
        "whiten": lambda: _pca(whiten=False),
        "eps": lambda: _pca(eps=1e-3)}),
    "Haar": (lambda: B.Haar((3, 8, 8), 2), {"shape": lambda: B.Haar((3, 8, 16), 2),
                                            "levels": lambda: B.Haar((3, 8, 8), 3)}),
}


def _same_basis(a: B.Basis, b: B.Basis):
    assert type(a) is type(b) and a.event_shape == b.event_shape
    for dtype in (torch.float32, F64):
        x = torch.randn(3, *a.event_shape, generator=_gen(7), dtype=dtype)
        assert torch.equal(a.to_coeffs(x), b.to_coeffs(x))
        assert torch.equal(a.from_coeffs(x), b.from_coeffs(x))
    la, lb = a.labels(), b.labels()
    assert list(la) == list(lb)
    for k in la:
        assert la[k].dtype == lb[k].dtype and torch.equal(la[k], lb[k]), k
    if isinstance(a, B.PCA):
        assert (a.scale is None) == (b.scale is None)
        assert a.scale is None or torch.equal(a.scale, b.scale)


@pytest.mark.parametrize("name", sorted(BASES))
def test_basis_config_round_trip(name):
    basis = BASES[name][0]()
    cfg = basis.to_config()
    assert cfg["type"] == name
    _same_basis(config.from_config(cfg), basis)
    _same_basis(config.from_config(_json_round_trip(cfg)), basis)
    assert config.fingerprint(_json_round_trip(cfg)) == config.fingerprint(cfg)


@pytest.mark.parametrize("name", sorted(BASES))
def test_basis_fingerprint_tracks_every_parameter(name):
    build, variants = BASES[name]
    fp = config.fingerprint(build().to_config())
    assert config.fingerprint(build().to_config()) == fp               # built twice: one fingerprint
    args = set(build().to_config()) - {"type"}
    assert set(variants) == args, "a variant for every constructor argument"
    for param, other in variants.items():
        assert config.fingerprint(other().to_config()) != fp, param


def test_pca_config_rebuilds_without_data():
    """The fitted U, mean, eigenvalues and variance travel in the config: no refit, same prior scale."""
    fitted = B.PCA.fit(_data(), whiten=True, eps=0.05)
    cfg = fitted.to_config()
    tensor_args = {k for k, v in cfg.items() if isinstance(v, torch.Tensor)}
    assert tensor_args == {"U", "mean", "eigenvalues", "variance"}
    assert cfg["whiten"] is True and cfg["eps"] == 0.05
    rebuilt = config.from_config(cfg)
    assert torch.equal(rebuilt.scale, fitted.scale) and torch.equal(rebuilt.U, fitted.U)
    cfg["U"][0, 0] += 1.0                                               # a config is a copy, not a view
    assert not torch.equal(cfg["U"], fitted.U)


# ------------------------------------------------------------------------------------------------
# groupings
# ------------------------------------------------------------------------------------------------

def test_grouping_config_round_trip_and_fingerprint():
    g = G.blocks((3, 4, 4), 2, order=[3, 1, 0, 2])
    cfg = g.to_config()
    assert cfg["type"] == "Grouping" and cfg["group"].dtype == torch.int64
    for c in (cfg, _json_round_trip(cfg)):
        assert torch.equal(config.from_config(c).group, g.group)
    again = G.blocks((3, 4, 4), 2, order=[3, 1, 0, 2])
    assert config.fingerprint(again.to_config()) == config.fingerprint(cfg)
    assert config.fingerprint(G.blocks((3, 4, 4), 2).to_config()) != config.fingerprint(cfg)


# ------------------------------------------------------------------------------------------------
# schedules
# ------------------------------------------------------------------------------------------------

LOG_VAR = torch.tensor([0.8, -0.4, -2.5, -1.0, 0.1, -3.3], dtype=F64)
HAAR = B.Haar((1, 8, 8), 3).labels()
COL = B.Pixel((2, 3, 5)).labels()["column"]
IV = S.gdm_intervals([0.2, 0.55])


def _linear(**change):
    args = dict(log_var=LOG_VAR, order=-LOG_VAR, a=0.7, gamma_denoise=-6.0, gamma_noise=4.0,
                sigma_min=0.5, power=0.5)
    return S.LinearGamma(**{**args, **change})


def _column(**change):
    return S.ColumnGamma(**{**dict(column=COL, b=0.4, gamma_min=-6.0, gamma_max=5.0), **change})


def _haar(**change):
    args = dict(level=HAAR["level"], column=HAAR["column"], a=0.4, b=0.3, gamma_min=-7.0, gamma_max=7.0)
    return S.HaarColumnGamma(**{**args, **change})


def _gw_gamma(**change):
    args = dict(grouping=G.per_element((3,)), intervals=IV, gamma_min=-5.0, gamma_max=6.0)
    return S.GroupwiseGamma(**{**args, **change})


SCHEDULES = {
    "GroupwiseSchedule": (lambda: S.GroupwiseSchedule(G.per_element((3,)), IV), {
        "grouping": lambda: S.GroupwiseSchedule(G.per_element((3,), order=[2, 0, 1]), IV),
        "intervals": lambda: S.GroupwiseSchedule(G.per_element((3,)), S.gdm_intervals([0.2, 0.6]))}),
    "LinearGamma": (_linear, {
        "log_var": lambda: _linear(log_var=LOG_VAR + 0.25),
        "order": lambda: _linear(order=-LOG_VAR.flip(0)),
        "a": lambda: _linear(a=0.8),
        "gamma_denoise": lambda: _linear(gamma_denoise=-5.0),
        "gamma_noise": lambda: _linear(gamma_noise=4.5),
        "sigma_min": lambda: _linear(sigma_min=0.6),
        "power": lambda: _linear(power=0.7)}),
    "ColumnGamma": (_column, {
        "column": lambda: _column(column=COL.flip(-1)),
        "b": lambda: _column(b=0.5),
        "gamma_min": lambda: _column(gamma_min=-7.0),
        "gamma_max": lambda: _column(gamma_max=6.0)}),
    "HaarColumnGamma": (_haar, {
        "level": lambda: _haar(level=HAAR["level"].clamp(max=2)),
        "column": lambda: _haar(column=HAAR["column"].flip(-1)),
        "a": lambda: _haar(a=0.5),
        "b": lambda: _haar(b=0.2),
        "gamma_min": lambda: _haar(gamma_min=-6.0),
        "gamma_max": lambda: _haar(gamma_max=6.0)}),
    "GroupwiseGamma": (_gw_gamma, {
        "grouping": lambda: _gw_gamma(grouping=G.per_element((3,), order=[1, 2, 0])),
        "intervals": lambda: _gw_gamma(intervals=None),
        "gamma_min": lambda: _gw_gamma(gamma_min=-4.0),
        "gamma_max": lambda: _gw_gamma(gamma_max=7.0)}),
}


def _times(sched) -> list[torch.Tensor]:
    """Many times, every breakpoint included, in float64 and float32."""
    t = torch.cat([torch.linspace(0, 1, 97, dtype=F64), torch.tensor(sched.breakpoints(), dtype=F64),
                   torch.rand(31, generator=_gen(3), dtype=F64)])
    return [t, t.float()]


def _same_schedule(a: S.Schedule, b: S.Schedule):
    assert type(a) is type(b) and a.event_shape == b.event_shape
    assert a.breakpoints() == b.breakpoints()
    for t in _times(a):
        for side in ("left", "right"):
            ma, mb = a.marginal(t, side), b.marginal(t, side)
            for f in S.Marginal._fields:
                assert torch.equal(getattr(ma, f), getattr(mb, f)), (f, side, t.dtype)
        assert torch.equal(a.state(t), b.state(t)) and torch.equal(a.summary(t), b.summary(t))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_config_round_trip(name):
    sched = SCHEDULES[name][0]()
    cfg = sched.to_config()
    assert cfg["type"] == name
    _same_schedule(config.from_config(cfg), sched)
    _same_schedule(config.from_config(_json_round_trip(cfg)), sched)
    assert config.fingerprint(_json_round_trip(cfg)) == config.fingerprint(cfg)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_fingerprint_tracks_every_parameter(name):
    build, variants = SCHEDULES[name]
    fp = config.fingerprint(build().to_config())
    assert config.fingerprint(build().to_config()) == fp
    assert set(variants) == set(build().to_config()) - {"type"}, "a variant for every constructor argument"
    for param, other in variants.items():
        assert config.fingerprint(other().to_config()) != fp, param


def test_schedule_config_is_the_same_on_any_device_and_dtype():
    """The config describes construction: moving or casting the module does not change it."""
    sched = _haar()
    fp = config.fingerprint(sched.to_config())
    assert config.fingerprint(sched.double().to_config()) == fp


def test_linear_gamma_config_keeps_the_given_gamma_noise():
    """σ_min raises γ̃_noise inside the schedule; the config keeps the argument, so σ_min is visible."""
    sched = _linear(sigma_min=0.99, gamma_noise=3.0)
    assert sched.gamma_noise > 3.0
    cfg = sched.to_config()
    assert cfg["gamma_noise"] == 3.0 and cfg["sigma_min"] == 0.99
    assert config.from_config(cfg).gamma_noise == sched.gamma_noise


def test_groupwise_schedule_config_nests_the_grouping_config():
    sched = S.GroupwiseSchedule(G.cdm((1, 4, 4)))
    cfg = sched.to_config()
    assert cfg["grouping"] == {"type": "Grouping", "group": cfg["grouping"]["group"]}
    assert torch.equal(cfg["grouping"]["group"], sched.grouping.group)
    assert torch.equal(cfg["intervals"], S.uniform_intervals(2)) and cfg["intervals"].dtype == F64


# ------------------------------------------------------------------------------------------------
# schedule samplers
# ------------------------------------------------------------------------------------------------

FAMILY = [G.blocks((1, 4, 4), 2), G.right_to_left((1, 4, 4), 4)]


def _sampler(**change):
    return S.schedule_sampler(**{**dict(groupings=FAMILY, shuffle=True, intervals=None), **change})


def _draws(sampler, seed: int = 4, n: int = 10) -> list[tuple[list, list]]:
    g = _gen(seed)
    return [(s.grouping.group.tolist(), s.intervals.tolist()) for s in (sampler(g) for _ in range(n))]


def test_schedule_sampler_config_round_trip():
    sampler = _sampler()
    cfg = sampler.to_config()
    assert cfg["type"] == "ScheduleSampler" and len(cfg["groupings"]) == 2 and cfg["shuffle"] is True
    for c in (cfg, _json_round_trip(cfg)):
        rebuilt = config.from_config(c)
        assert isinstance(rebuilt, S.ScheduleSampler)
        assert _draws(rebuilt) == _draws(sampler)                       # same draws from the same seed
    iv = S.uniform_intervals(4) ** 0.5
    with_iv = S.schedule_sampler([G.right_to_left((1, 4, 4), 4)], intervals=iv)
    assert _draws(config.from_config(_json_round_trip(with_iv.to_config()))) == _draws(with_iv)


def test_schedule_sampler_fingerprint_tracks_every_parameter():
    fp = config.fingerprint(_sampler().to_config())
    assert config.fingerprint(_sampler().to_config()) == fp
    variants = {"groupings": _sampler(groupings=FAMILY[::-1]), "shuffle": _sampler(shuffle=False),
                "intervals": _sampler(groupings=[G.blocks((1, 4, 4), 2)] * 2,
                                      intervals=S.uniform_intervals(4) ** 0.5)}
    assert set(variants) == set(_sampler().to_config()) - {"type"}
    for param, other in variants.items():
        assert config.fingerprint(other.to_config()) != fp, param


def test_every_component_class_is_registered():
    names = set(BASES) | set(SCHEDULES) | {"Grouping", "ScheduleSampler"}
    assert names <= set(config.registered())
