"""Tests for gdmkit.nets: shapes, conditioning on the noising state and summary, validation."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from gdmkit import config
from gdmkit.nets import MLP, UNet, count_parameters, make_net, sinusoidal_embedding, unet_preset
from gdmkit.norms import ChannelNorm, group_count, make_norm


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perturb_output_layer(layer: torch.nn.Module, seed: int = 1) -> None:
    """Give the zero-initialised output layer random weights, so the output depends on the input."""
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=_gen(seed)))


def test_sinusoidal_embedding_matches_its_formula():
    s = torch.tensor([0.0, 0.25, 1.0])
    dim, scale, max_period = 6, 1000.0, 10_000.0
    emb = sinusoidal_embedding(s, dim, scale=scale, max_period=max_period)
    assert emb.shape == (3, dim)
    for b in range(3):
        for k in range(dim // 2):
            arg = scale * s[b].item() * max_period ** (-k / (dim // 2))
            assert emb[b, k].item() == pytest.approx(math.cos(arg), abs=1e-4)
            assert emb[b, dim // 2 + k].item() == pytest.approx(math.sin(arg), abs=1e-4)
    odd = sinusoidal_embedding(s, 7)
    assert odd.shape == (3, 7) and torch.all(odd[:, -1] == 0)


@pytest.mark.parametrize("event_shape", [(2,), (2, 3)])
def test_mlp_shape_and_zero_init(event_shape):
    d = math.prod(event_shape)
    net = MLP(d, hidden=16, depth=2, emb_dim=8)
    x = torch.randn(5, *event_shape, generator=_gen())
    out = net(x, torch.rand(x.shape, generator=_gen(1)), torch.rand(5, generator=_gen(2)))
    assert out.shape == x.shape
    assert torch.all(out == 0)  # zero-initialised last layer


def test_mlp_parameter_count_re_derived():
    d, h, depth, e = 3, 16, 3, 8
    expected = (2 * d + e) * h + h + (depth - 1) * (h * h + h) + h * d + d
    assert count_parameters(MLP(d, hidden=h, depth=depth, emb_dim=e)) == expected


def test_mlp_output_depends_on_state_and_summary():
    net = MLP(4, hidden=16, depth=2, emb_dim=8)
    _perturb_output_layer(net.out)
    x, state = torch.randn(3, 4, generator=_gen()), torch.rand(3, 4, generator=_gen(1))
    t = torch.full((3,), 0.3)
    base = net(x, state, t)
    assert not torch.allclose(base, net(x, state.flip(1), t))
    assert not torch.allclose(base, net(x, state, t + 0.2))


def test_mlp_rejects_wrong_dim():
    with pytest.raises(ValueError, match="4 elements"):
        MLP(4)(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="depth"):
        MLP(4, depth=0)


@pytest.mark.parametrize(
    "preset, channels, size", [("smoke", 1, 8), ("smoke", 3, 16), ("laptop", 3, 16), ("laptop", 1, 8)]
)
def test_unet_output_shape(preset, channels, size):
    net = unet_preset(preset, channels, size)
    x = torch.randn(2, channels, size, size, generator=_gen())
    out = net(x, torch.rand(x.shape, generator=_gen(1)), torch.rand(2, generator=_gen(2)))
    assert out.shape == x.shape
    assert torch.all(out == 0)  # zero-initialised final convolution


def test_unet_attention_placement_follows_attn_resolutions():
    # laptop at 16: levels 16, 8, 4; attention after the ResBlocks at 8 (1 down + 2 up) and in the middle
    net = unet_preset("laptop", 1, 16)
    n_attn = sum(type(m).__name__ == "AttnBlock" for m in net.modules())
    assert n_attn == 1 + 2 + 1
    assert not any(type(m).__name__ == "AttnBlock" for m in unet_preset("smoke", 1, 16).modules())


@pytest.mark.parametrize("preset", ["smoke", "laptop"])
@pytest.mark.parametrize("norm", ["group", "channel"])
def test_unet_output_depends_on_state_and_summary(preset, norm):
    """The summary reaches the output through the time embedding alone (state held fixed): by more than
    rounding. With one GroupNorm channel per group (the 32-group rule at <= 32 channels) it did not: every
    ResBlock's norm2 subtracted the embedding again (relative change ~1e-6)."""
    torch.manual_seed(0)
    net = unet_preset(preset, 2, 16, norm=norm)
    _perturb_output_layer(net.conv_out)
    x = torch.randn(2, 2, 16, 16, generator=_gen())
    state, t = torch.rand(2, 2, 16, 16, generator=_gen(1)), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        base = net(x, state, t)
        rel = lambda out: float((out - base).norm() / base.norm())  # noqa: E731
        assert rel(net(x, torch.rand(2, 2, 16, 16, generator=_gen(3)), t)) > 1e-2
        assert rel(net(x, state, t + 0.1)) > 1e-2


def test_group_count_is_the_largest_power_of_two_with_four_channels_per_group():
    for channels in range(1, 257):
        g = group_count(channels)
        assert channels % g == 0 and g <= 32 and g & (g - 1) == 0
        assert g == 1 or channels // g >= 4
        bigger = [h for h in (2, 4, 8, 16, 32) if h > g and channels % h == 0 and channels // h >= 4]
        assert not bigger, (channels, g, bigger)
    assert [group_count(c) for c in (16, 32, 64, 128, 256)] == [4, 8, 16, 32, 32]
    with pytest.raises(ValueError, match="positive"):
        group_count(0)


def test_one_channel_groups_erase_a_per_channel_constant_and_group_count_does_not():
    """Why group_count: a time embedding added per channel (constant over positions) before a GroupNorm
    with one channel per group is removed exactly; with four channels per group it survives."""
    h = torch.randn(2, 16, 8, 8, generator=_gen())
    emb = torch.randn(2, 16, 1, 1, generator=_gen(1))
    one = torch.nn.GroupNorm(16, 16, eps=1e-6)
    assert torch.allclose(one(h + emb), one(h), atol=1e-5)
    ours = make_norm(16)
    assert ours.num_groups == group_count(16) == 4
    with torch.no_grad():
        assert float((ours(h + emb) - ours(h)).abs().max()) > 0.1


def test_unet_examples_are_independent_of_the_batch():
    # GroupNorm normalises per example: example 0's output must not depend on example 1
    net = UNet(1, 8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    _perturb_output_layer(net.conv_out)
    x, state, t = torch.randn(2, 1, 8, 8, generator=_gen()), torch.rand(2, 1, 8, 8, generator=_gen(1)), torch.rand(2)
    both = net(x, state, t)
    alone = net(x[:1], state[:1], t[:1])
    assert (both[:1] - alone).abs().max().item() < 1e-5  # (torch.testing imports slowly)


def test_unet_state_channels_and_rectangular_images():
    net = UNet(3, 8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), state_channels=1)
    x = torch.randn(1, 3, 8, 16, generator=_gen())  # wider than tall: column-wise extension
    assert net(x, torch.rand(1, 1, 8, 16, generator=_gen(1)), torch.rand(1)).shape == x.shape
    with pytest.raises(ValueError, match="state of shape"):
        net(x, torch.rand(1, 3, 8, 16), torch.rand(1))


def test_unet_bad_image_size_raises():
    with pytest.raises(ValueError, match="multiple of 4"):
        UNet(1, 18, channel_mult=(1, 2, 2))
    net = unet_preset("smoke", 1, 8)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.zeros(1, 1, 7, 8), torch.zeros(1, 1, 7, 8), torch.zeros(1))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1))


def test_unet_presets_and_unknown_name():
    sizes = [count_parameters(unet_preset(name, 3, 32)) for name in ("smoke", "laptop")]
    assert sizes[0] < sizes[1]
    paper = unet_preset("paper", 3, 8)
    assert 30e6 < count_parameters(paper) < 80e6  # DDPM++ CIFAR-10 size: tens of millions
    assert paper(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(1)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="laptop"):
        unet_preset("huge", 3, 32)


# ------------------------------------------------------------------------------------- configs


def _built(cfg: dict, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return config.from_config(cfg)


def _nets_to_describe():
    unet = dict(channels=2, image_size=8, base_channels=8, channel_mult=(1, 3), num_res_blocks=2,
                attn_resolutions=(4,), dropout=0.25, state_channels=1, mid_attention=False, emb_scale=10.0)
    yield "mlp", lambda: MLP(5, hidden=12, depth=3, emb_dim=6, emb_scale=2.0)
    yield "unet", lambda: UNet(**unet)
    yield "preset", lambda: unet_preset("laptop", 1, 16, dropout=0.1)
    yield "make_net mlp", lambda: make_net("mlp", (2, 3), hidden=8, depth=1, emb_dim=4)
    yield "make_net unet", lambda: make_net("smoke", (3, 8, 8))


@pytest.mark.parametrize("name, build", list(_nets_to_describe()))
def test_from_config_builds_the_same_architecture_and_initial_weights(name, build):
    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = build()
    cfg = net.to_config()
    assert json.loads(json.dumps(cfg)) == cfg  # plain JSON, no tensors
    again = _built(cfg, 3)
    assert type(again) is type(net) and again.to_config() == cfg
    a, b = net.state_dict(), again.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # same seed, same architecture: same initial weights
    assert repr(again) == repr(net)  # dropout rates, attention heads, ... (what state_dict cannot see)


def test_every_unet_argument_is_in_its_config():
    params = set(inspect.signature(UNet.__init__).parameters) - {"self"}
    assert set(unet_preset("smoke", 1, 8).to_config()) == params | {"type"}
    assert set(MLP(2).to_config()) == set(inspect.signature(MLP.__init__).parameters) - {"self"} | {"type"}
    base = UNet(1, 8, channel_mult=(1, 2)).to_config()
    changed = {"channels": 2, "image_size": 16, "base_channels": 32, "channel_mult": [1, 1],
               "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.1, "state_channels": 2,
               "mid_attention": False, "emb_scale": 1.0, "norm": "channel"}
    # GUD App. A's conditioning option: its arguments only act together (cross-attention needs labels)
    cross = {"state_conditioning": "cross_attention", "position_labels": torch.ones(1, 1, 8, 8),
             "mixer_width": 8, "mixer_depth": 1}
    assert set(changed) | set(cross) == params
    for key, value in changed.items():  # any argument changes the fingerprint
        assert config.fingerprint({**base, key: value}) != config.fingerprint(base), key
        assert _built({**base, key: value}, 0).to_config()[key] == value
    cross_cfg = _built({**base, **cross}, 0).to_config()
    other = {"state_conditioning": "channels", "position_labels": 2 * cross["position_labels"],
             "mixer_width": 16, "mixer_depth": 2}
    for key, value in cross.items():
        assert config.fingerprint({**cross_cfg, key: other[key]}) != config.fingerprint(cross_cfg), key
        got = cross_cfg[key]
        assert torch.equal(got, value) if key == "position_labels" else got == value
    assert base["state_conditioning"] == "channels" and base["position_labels"] is None


def test_net_from_config_rejects_unknown_arguments_and_other_types():
    with pytest.raises(ValueError, match=r"unknown entries \['width'\]"):
        config.from_config({**MLP(2).to_config(), "width": 3})
    with pytest.raises(ValueError, match="of type 'MLP'"):
        UNet.from_config(MLP(2).to_config())


def test_gud_conditioning_option_leaves_the_default_unet_unchanged():
    """GUD App. A's option must not change what existing configs build: same modules, same weights, same
    outputs as a config written before the option existed (no conditioning keys)."""
    old_cfg = {k: v for k, v in unet_preset("smoke", 1, 8).to_config().items()
               if k not in ("state_conditioning", "position_labels", "mixer_width", "mixer_depth")}
    a, b = _built(old_cfg, 4), _built(unet_preset("smoke", 1, 8).to_config(), 4)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.cross is None and not any(k.startswith(("cross", "state_encoder")) for k in sa)
    assert a.conv_in.in_channels == 2  # x_t and γ as channels


# ---------------------------------------------------------------------------------- normalisation


def test_channel_norm_standardises_each_position_over_its_channels():
    x = 3.0 + 2.0 * torch.randn(4, 6, 5, 7, generator=_gen(0), dtype=torch.float64)
    norm = ChannelNorm(6).double()
    y = norm(x)
    assert torch.allclose(y.mean(1), torch.zeros(4, 5, 7, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(4, 5, 7, dtype=torch.float64), atol=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0)), norm.bias.copy_(-torch.arange(6.0))
    ref = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-6)
    ref = ref * torch.arange(1.0, 7.0)[:, None, None] - torch.arange(6.0)[:, None, None]
    assert torch.allclose(norm(x), ref.double(), atol=1e-12)


def _pool_coupling(norm: torch.nn.Module) -> tuple[float, float]:
    """|d out / d x| of a (1, 8, 6, 6) map from the pixel (5, 5) to the pixel (0, 0) and to itself."""
    x = torch.randn(1, 8, 6, 6, generator=_gen(1), dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, generator=_gen(2), dtype=torch.float64)  # a plain sum of standardised values is 0
    (g,) = torch.autograd.grad((norm.double()(x)[0, :, 0, 0] * w).sum(), x)
    (own,) = torch.autograd.grad((norm(x)[0, :, 5, 5] * w).sum(), x)
    return float(g[0, :, 5, 5].abs().max()), float(own[0, :, 5, 5].abs().max())


def test_channel_norm_never_pools_positions_where_group_norm_does():
    """GDM Prop. 3.3: the optimal denoiser ignores a pixel group that is still pure noise. GroupNorm's
    statistics carry every position to every other; ChannelNorm's carry none (exactly 0)."""
    far, own = _pool_coupling(ChannelNorm(8))
    assert far == 0.0 and own > 0.1
    far_g, _ = _pool_coupling(torch.nn.GroupNorm(4, 8))
    assert far_g > 1e-3  # the contrast: the test can see a coupling when there is one


def test_unet_norm_option_builds_its_norm_everywhere_and_rejects_unknown():
    net = unet_preset("laptop", 1, 16, norm="channel")
    kinds = {type(m) for m in net.modules() if isinstance(m, (torch.nn.GroupNorm, ChannelNorm))}
    assert kinds == {ChannelNorm}
    assert {type(m) for m in unet_preset("laptop", 1, 16).modules()
            if isinstance(m, (torch.nn.GroupNorm, ChannelNorm))} == {torch.nn.GroupNorm}
    out = net(torch.randn(2, 1, 16, 16, generator=_gen(2)), torch.rand(2, 1, 16, 16, generator=_gen(3)),
              torch.rand(2, generator=_gen(4)))
    assert out.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown norm 'batch'.*'channel'"):
        UNet(1, 8, norm="batch")


def test_norm_option_leaves_configs_written_before_it_unchanged():
    """A checkpoint config without ``norm`` (written before the option) builds the GroupNorm U-Net."""
    old_cfg = {k: v for k, v in unet_preset("smoke", 1, 8).to_config().items() if k != "norm"}
    a, b = _built(old_cfg, 4), _built(unet_preset("smoke", 1, 8).to_config(), 4)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.norm == "group"

