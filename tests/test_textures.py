"""Bundled scikit-image textures: range, box filter, disjoint split, crops."""
import pytest
import torch

from gdmkit import textures


@pytest.mark.parametrize("name", textures.TEXTURES)
def test_texture_range_and_box_filter(name):
    import skimage.data
    raw = torch.as_tensor(getattr(skimage.data, name)(), dtype=torch.float64)
    x = textures.texture(name, scale=4)
    assert x.shape == (1, 128, 128) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.isclose(x[0, 3, 5].double(), raw[12:16, 20:24].mean().round() / 127.5 - 1, atol=1e-6)
    assert torch.allclose(textures.texture(name, scale=1)[0].double(), raw / 127.5 - 1, atol=1e-6)
    k = (x.double() + 1) * 127.5                                  # still 8-bit data
    assert torch.allclose(k, k.round(), atol=1e-3)


def test_split_and_crops():
    img = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8)
    train, test = textures.split_columns(img, 0.25)
    assert train.shape[-1] == 6 and test.shape[-1] == 2 and torch.equal(torch.cat([train, test], -1), img)
    g = torch.Generator().manual_seed(0)
    crops = textures.random_crops(img, 5, 3, g)
    assert crops.shape == (5, 2, 3, 3)
    for c in crops:    # each crop is a contiguous window of the image
        y, x = divmod(int(c[0, 0, 0]), 8)
        assert torch.equal(c, img[:, y:y + 3, x:x + 3])
    again = textures.random_crops(img, 5, 3, torch.Generator().manual_seed(0))
    assert torch.equal(crops, again)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown texture"):
        textures.texture("marble")
    with pytest.raises(ValueError, match="does not fit"):
        textures.random_crops(torch.zeros(1, 4, 4), 1, 5)
    with pytest.raises(ValueError, match="held_out"):
        textures.split_columns(torch.zeros(1, 4, 4), 1.5)
