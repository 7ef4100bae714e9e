"""FamilySampler: per-batch draws from a continuous schedule family (GUD App. B)."""
from __future__ import annotations

import pytest
import torch

from gdmkit import bases, config, nets, paths, schedules
from gdmkit.schedules import FamilySampler, LinearGamma


def _lin(a=1.0):
    log_var = torch.linspace(-4.0, 0.0, 16).reshape(1, 4, 4)
    return LinearGamma(log_var, -log_var, a=a, gamma_denoise=-3.0, power=0.5)


def test_draws_are_uniform_in_range_and_members_equal_direct_construction():
    s = FamilySampler(_lin().to_config(), {"a": (0.4, 1.6)})
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([s.draw(g)["a"] for _ in range(4000)])
    assert draws.min() >= 0.4 and draws.max() <= 1.6
    # mean and variance of U(0.4, 1.6): 1.0 and 1.2² / 12, within 4 standard errors
    assert abs(draws.mean() - 1.0) < 4 * (1.2 / 12**0.5) / 4000**0.5
    assert abs(draws.var() - 1.2**2 / 12) < 0.01
    t = torch.rand(8, generator=g)
    member, direct = s.member(a=0.7), _lin(0.7)
    assert torch.equal(member.gamma(t)[0], direct.gamma(t)[0])
    assert config.fingerprint(member.to_config()) == config.fingerprint(direct.to_config())


def test_same_seed_same_sequence_and_config_round_trip():
    s = FamilySampler(_lin().to_config(), {"a": (0.4, 1.6), "gamma_denoise": (-4.0, -2.0)})
    seq = [s(torch.Generator().manual_seed(3)).a for _ in range(2)]
    assert seq[0] == seq[1]
    r = config.from_config(s.to_config())
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(3):
        assert r.draw(g1) == s.draw(g2)
    assert config.fingerprint(r.to_config()) == config.fingerprint(s.to_config())
    other = FamilySampler(_lin().to_config(), {"a": (0.4, 1.5), "gamma_denoise": (-4.0, -2.0)})
    assert config.fingerprint(other.to_config()) != config.fingerprint(s.to_config())


def test_blend_is_the_fourier_ordering_mix():
    """order = (1 − r) A + r B, e.g. GUD Fig. 5's l = (1 − r)(−log Σ) + r (|k| + δ)/κ."""
    base = _lin()
    A, B = -base.log_var, torch.arange(16.0).reshape(1, 4, 4)
    s = FamilySampler(base.to_config(), {"r": (0.0, 1.0), "a": (0.5, 1.5)}, blends={"order": ("r", A, B)})
    m = s.member(r=0.25, a=1.0)
    assert torch.allclose(m.order, 0.75 * A.double() + 0.25 * B.double())
    assert torch.equal(config.from_config(s.to_config()).member(r=0.25, a=1.0).order, m.order)


def test_loss_draws_a_member_per_batch_and_round_trips():
    basis = bases.Pixel((1, 4, 4))
    s = FamilySampler(_lin().to_config(), {"a": (0.4, 1.6)})
    path = paths.DiagonalPath(basis, _lin(), target="eps")
    loss = path.loss_fn(schedule_sampler=s)
    net = nets.make_net("mlp", (1, 4, 4), hidden=16, depth=2, emb_dim=8)
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    per_example = loss(net, x, torch.Generator().manual_seed(1))
    assert per_example.shape == (6,) and bool(per_example.isfinite().all())
    assert config.from_config(loss.to_config()).to_config()["schedule_sampler"]["ranges"] == {"a": [0.4, 1.6]}


@pytest.mark.parametrize("ranges, blends, match", [
    ({}, None, "ranges is empty"),
    ({"softness": (0, 1)}, None, "not an argument"),
    ({"a": (1.0, 0.5)}, None, "lo <= hi"),
    ({"a": (0.5, float("nan"))}, None, "finite"),
    ({"a": (-1.0, 1.0)}, None, "a must be >= 0"),          # the class refuses an end of the range
    ({"a": (0.5, 1.0)}, {"order": ("r", torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))}, "give its range"),
])
def test_bad_input_names_the_problem(ranges, blends, match):
    with pytest.raises(ValueError, match=match):
        FamilySampler(_lin().to_config(), ranges, blends)


def test_template_must_be_a_schedule_config():
    with pytest.raises(ValueError, match="to_config"):
        FamilySampler(_lin(), {"a": (0.4, 1.6)})
    assert isinstance(schedules.FamilySampler(_lin().to_config(), {"a": (1, 1)})(None), LinearGamma)
