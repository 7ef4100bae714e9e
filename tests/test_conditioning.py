"""GUD App. A's noising-state conditioning: state encoder, MLP-Mixer, cross-attention, the U-Net option."""
import math

import pytest
import torch

from gdmkit import bases, conditioning, config, nets


def _labels(C=1, S=8):
    return torch.linspace(0.0, 3.0, C * S * S).reshape(C, S, S)


def _randomise(net, seed=0):
    """Give the zero-initialised output layers random weights (an untrained net predicts 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not bool(p.abs().sum()):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net


def test_gamma_features_shape_and_linear_column():
    g = torch.linspace(-10, 15, 7).reshape(1, 7)
    f = conditioning.gamma_features(g, 9)
    assert f.shape == (1, 7, 9)
    assert torch.allclose(f[..., 0], g / 10)
    assert torch.allclose(f[..., 1:5].square() + f[..., 5:9].square(), torch.ones(1, 7, 4), atol=1e-6)
    assert conditioning.gamma_features(g, 4).shape == (1, 7, 4)  # padded with zeros
    with pytest.raises(ValueError):
        conditioning.gamma_features(g, 0)


def test_mixer_block_mixes_tokens_and_keeps_shape():
    torch.manual_seed(0)
    block = conditioning.MixerBlock(tokens=6, width=4, token_hidden=8, channel_hidden=8)
    h = torch.randn(2, 6, 4)
    out = block(h)
    assert out.shape == h.shape
    h2 = h.clone()
    h2[:, 0] += torch.randn(4)  # a change in token 0 reaches every other token through the token-mixing MLP
    changed = (block(h2) - out).abs().sum(-1)[0]
    assert bool((changed[1:] > 0).all())


def test_state_encoder_uses_gamma_and_the_labels():
    torch.manual_seed(0)
    enc = conditioning.StateEncoder(torch.arange(6.0)[None] ** 2, width=8, depth=2)
    assert torch.allclose(enc.labels.mean(0), torch.zeros(1), atol=1e-6)  # standardised per label
    g = torch.randn(3, 1, 2, 3)
    tok = enc(g)
    assert tok.shape == (3, 6, 8)
    assert not torch.allclose(enc(g + 1.0), tok)
    torch.manual_seed(0)
    other = conditioning.StateEncoder(torch.arange(6.0).flip(0)[None] ** 2, width=8, depth=2)
    assert not torch.allclose(other(g), tok)  # same weights, other labels
    with pytest.raises(ValueError, match="d = 6"):
        enc(torch.randn(3, 5))
    with pytest.raises(ValueError, match="shape"):
        conditioning.StateEncoder(torch.arange(6.0))


def test_cross_attention_starts_as_identity_and_checks_positions():
    torch.manual_seed(0)
    ca = conditioning.StateCrossAttention(channels=16, width=8, tokens=10, n_out=16)
    x, tok = torch.randn(2, 16, 4, 4), torch.randn(2, 10, 8)
    assert torch.equal(ca(x, tok), x)  # zero-initialised output projection
    _randomise(ca)
    assert not torch.allclose(ca(x, tok), x)
    with pytest.raises(ValueError, match="image_size"):
        ca(torch.randn(2, 16, 2, 2), tok)


def test_cross_sites_match_the_unet_blocks():
    for channel_mult, nrb in (((1, 2), 1), ((1, 2, 2), 2)):
        sites = conditioning.cross_sites(16, 8, channel_mult, nrb)
        assert len(sites) == 2 * len(channel_mult) + 1
        net = nets.UNet(1, 16, 8, channel_mult, nrb, attn_resolutions=(),
                        state_conditioning="cross_attention", position_labels=_labels(1, 16), mixer_width=8,
                        mixer_depth=1)
        for key, ch, side in sites:
            if key.startswith("down"):
                block = net.down[int(key[4:])]
            elif key.startswith("up"):
                block = net.up[int(key[2:])]
            else:
                block = net.mid[0]
            assert isinstance(block, nets._Block) and block.res.conv2.out_channels == ch
            assert net.cross[key].n_out == side * side
        out = net(torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16), torch.rand(2))
        assert out.shape == (2, 1, 16, 16)


def test_cross_attention_unet_sees_gamma_only_through_cross_attention():
    torch.manual_seed(0)
    net = _randomise(nets.unet_preset("smoke", 1, 8, state_conditioning="cross_attention",
                                      position_labels=_labels()))
    assert net.conv_in.in_channels == 1  # x_t only
    x, s = torch.randn(2, 1, 8, 8), torch.full((2,), 0.3)
    g1, g2 = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    assert not torch.allclose(net(x, g1, s), net(x, g2, s))
    with torch.no_grad():
        for block in net.cross.values():
            block.proj.weight.zero_()
            block.proj.bias.zero_()
    assert torch.allclose(net(x, g1, s), net(x, g2, s))  # no cross-attention: γ has no way in


def test_channels_unet_has_no_conditioning_modules_and_refuses_labels():
    net = nets.unet_preset("smoke", 1, 8)
    assert net.cross is None
    assert not any(isinstance(m, (conditioning.StateEncoder, conditioning.StateCrossAttention))
                   for m in net.modules())
    assert not any(k.startswith(("cross", "state_encoder")) for k in net.state_dict())
    with pytest.raises(ValueError, match="cross_attention"):
        nets.unet_preset("smoke", 1, 8, position_labels=_labels())
    with pytest.raises(ValueError, match="state_conditioning"):
        nets.unet_preset("smoke", 1, 8, state_conditioning="film")
    with pytest.raises(ValueError, match="position_labels"):
        nets.unet_preset("smoke", 1, 8, state_conditioning="cross_attention")
    with pytest.raises(ValueError, match="position_labels"):
        nets.unet_preset("smoke", 1, 8, state_conditioning="cross_attention",
                         position_labels=torch.zeros(4, 4))


def test_cross_attention_config_round_trip_and_fingerprint():
    kw = dict(state_conditioning="cross_attention", position_labels=_labels(), mixer_width=8, mixer_depth=1)
    torch.manual_seed(2)
    net = nets.unet_preset("smoke", 1, 8, **kw)
    cfg = net.to_config()
    assert cfg["state_conditioning"] == "cross_attention"
    assert torch.equal(cfg["position_labels"][0], _labels())
    js, tensors = config.split_tensors(cfg)  # what a checkpoint stores
    torch.manual_seed(2)
    again = config.from_config(config.join_tensors(js, tensors))
    a, b = net.state_dict(), again.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    other = {**cfg, "position_labels": cfg["position_labels"] + 1}
    assert config.fingerprint(other) != config.fingerprint(cfg)
    for key, value in (("mixer_width", 16), ("mixer_depth", 2)):
        assert config.fingerprint({**cfg, key: value}) != config.fingerprint(cfg)


def test_position_labels_of_a_basis():
    x = torch.randn(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    pca = bases.PCA.fit(x)
    lab = conditioning.position_labels(pca, ["-log_variance", "rank"])
    assert lab.shape == (2, 1, 4, 4)
    assert torch.allclose(lab[0], -pca.labels()["variance"].log())
    four = bases.Fourier((1, 4, 4))
    k = conditioning.position_labels(four, "frequency")
    assert math.isclose(float(k.max()), math.sqrt(8), rel_tol=1e-6)
    with pytest.raises(ValueError, match="no label"):
        conditioning.position_labels(pca, "column")
