"""Factor × band sensitivity and traversal exclusivity (gdmkit.factors) on exact decoders."""
import math

import pytest
import torch

from gdmkit import data, factors, groupings

SHAPE = (3, 16, 16)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _render(z):
    """A known decoder: latent components (c, 0, 0) -> x, y, scale, hue of a rendered circle; nothing
    else in the latent matters."""
    u = torch.sigmoid(z[:, :, 0, 0])  # (N, 3) in (0, 1)
    hue = torch.sigmoid(z[:, 0, 0, 1])
    f = data.ShapeFactors(torch.ones(len(z), dtype=torch.long), 0.3 + 0.4 * u[:, 0], 0.3 + 0.4 * u[:, 1],
                          0.12 + 0.13 * u[:, 2], hue)
    return data.render_shapes(f, 16)


def test_change_kinds():
    reader = factors.ShapeFactorReader()
    a = torch.tensor([[0.1, 0.2, 0.3, math.pi - 0.1]], dtype=torch.float64)
    b = torch.tensor([[0.3, 0.2, 0.1, -math.pi + 0.1]], dtype=torch.float64)
    d = reader.change(a, b)
    assert torch.allclose(d, torch.tensor([[0.2, 0.0, 0.2, 0.2]], dtype=torch.float64))  # hue wraps
    assert torch.equal(factors._change(torch.tensor([[1.0]]), torch.tensor([[2.0]]), ["categorical"]),
                       torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="unknown factor kind"):
        factors._change(a[:, :1], b[:, :1], ["ordinal"])


def test_reader_recovers_rendered_factors():
    x, f = data.shapes(64, 16, generator=_gen(0))
    est = factors.ShapeFactorReader()(x)
    assert (est[:, 0] - f.x.double()).abs().max() < 0.03
    assert (est[:, 1] - f.y.double()).abs().max() < 0.06
    hue = torch.remainder(est[:, 3] / (2 * math.pi), 1.0)
    d = torch.remainder(hue - f.hue.double() + 0.5, 1.0) - 0.5
    assert d.abs().max() < 0.03


def test_pair_scale_positive_and_rejects_constant():
    reader = factors.ShapeFactorReader()
    x, _ = data.shapes(128, 16, generator=_gen(0))
    s = factors.pair_scale(reader, x, _gen(1))
    assert s.shape == (4,) and bool((s > 0).all())
    assert 1.0 < float(s[3]) < 2.2  # uniform hue: E|Δ angle| = π/2
    with pytest.raises(ValueError, match="do not vary"):
        factors.pair_scale(reader, x[:1].expand(8, -1, -1, -1), _gen(1))


def test_band_sensitivity_finds_the_band_that_holds_the_factors():
    z = torch.randn(32, *SHAPE, generator=_gen(0))
    labels = torch.ones(SHAPE, dtype=torch.long)
    labels[:, 0, 0] = 0  # band 0 = the components the decoder reads (plus (0, 0, 1) in band 1: hue)
    g = groupings.Grouping(labels)
    reader = factors.ShapeFactorReader()
    x, _ = data.shapes(256, 16, generator=_gen(1))
    scale = factors.pair_scale(reader, x, _gen(2))
    ds = factors.band_sensitivity(_render, z, g, reader, scale, band_names=["low", "rest"], generator=_gen(3))
    s = ds.sensitivity
    assert s.dims == ("factor", "band") and list(s.band.values) == ["low", "rest"]
    for f in ("x", "y", "scale"):
        assert float(s.sel(factor=f, band="low")) > 0.1 and float(s.sel(factor=f, band="rest")) < 1e-6
    assert float(s.sel(factor="hue", band="rest")) > 0.1
    share = factors.band_share(s)
    assert torch.allclose(torch.as_tensor(share.sum("band").values), torch.ones(4, dtype=torch.float64))
    leak, sem = factors.band_leak(ds, ["x", "y", "scale"])  # the decoder ignores band "rest" for these
    assert leak < 1e-6 and sem < 1e-6
    leak_hue, _ = factors.band_leak(ds, ["hue"])
    assert abs(leak_hue - float(share.sel(factor="hue", band="rest"))) < 1e-12


def test_traversal_exclusivity_on_a_disentangled_decoder():
    z = torch.randn(6, *SHAPE, generator=_gen(0))
    reader = factors.ShapeFactorReader()
    x, _ = data.shapes(256, 16, generator=_gen(1))
    scale = factors.pair_scale(reader, x, _gen(2))
    elements = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 0, 1)]
    eff = factors.traversal_effects(_render, z, elements, [-3, -1, 1, 3], reader, scale)
    ex = factors.exclusivity(eff)
    assert list(ex["main factor"]) == ["x", "y", "scale", "hue"]
    assert (ex["share"] > 0.6).all()
    score = factors.exclusivity_score(eff)
    assert score["chance"] == 0.25 and score["mean"] > 0.6 and 0.25 <= score["weighted"] <= 1
    assert abs(score["sem"] - float(ex["share"].std(ddof=1)) / 2) < 1e-12  # 4 elements
    with pytest.raises(ValueError, match="move no factor"):
        factors.exclusivity(factors.traversal_effects(_render, z[:2], [(1, 5, 5)], [3.0], reader, scale))
