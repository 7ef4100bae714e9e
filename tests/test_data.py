"""Tests for gdmkit.data: generators re-derived from their definitions, loaders on tiny files in the
real on-disk formats (written here), dequantisation and cached statistics."""
from __future__ import annotations

import math
import pickle
import struct

import numpy as np
import pytest
import torch

from gdmkit import data as D
from gdmkit.oracles import GaussianMixture


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- mixtures
def test_mixture_validation_errors():
    w, mu, cov = torch.tensor([0.5, 0.5]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2).clone()
    with pytest.raises(ValueError, match="non-negative"):
        GaussianMixture(torch.tensor([0.5, -0.6]), mu, cov)
    with pytest.raises(ValueError, match="share K"):
        GaussianMixture(w, torch.zeros(3, 2), cov)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(w, mu, -cov)
    with pytest.raises(ValueError, match="grid2d"):
        D.mixture_preset("nope")


def test_mixture_sample_moments_and_determinism():
    m = GaussianMixture(torch.tensor([0.25, 0.75]), torch.tensor([[0.5, 0.0], [-0.5, 0.2]]),
                          torch.tensor([[[0.04, 0.01], [0.01, 0.02]], [[0.01, 0.0], [0.0, 0.09]]]))
    x, k = m.sample(40000, gen(1), return_labels=True)
    assert x.dtype == torch.float32 and x.shape == (40000, 2)
    assert torch.equal(x, m.sample(40000, gen(1)))
    mean = (m.weights[:, None] * m.means).sum(0)
    second = (m.weights[:, None, None] * (m.covs + m.means[:, :, None] * m.means[:, None, :])).sum(0)
    cov = (second - mean[:, None] * mean[None, :]).float()
    mean = mean.float()
    assert torch.allclose(x.mean(0), mean, atol=0.01)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.01)
    assert abs(k.float().mean().item() - 0.75) < 0.01
    # log_prob: a one-component mixture is that Gaussian
    one = GaussianMixture(torch.ones(1), m.means[:1], m.covs[:1])
    ref = torch.distributions.MultivariateNormal(m.means[0].double(), m.covs[0].double())
    assert torch.allclose(one.log_prob(x[:5]), ref.log_prob(x[:5].double()))
    # and the mixture is the log-sum-exp of weighted components
    comps = [torch.distributions.MultivariateNormal(mu.double(), c.double()) for mu, c in
             zip(m.means, m.covs, strict=True)]
    mix = torch.stack([w.log() + c.log_prob(x[:5].double()) for w, c in zip(m.weights.double(), comps,
                                                                            strict=True)]).logsumexp(0)
    assert torch.allclose(m.log_prob(x[:5]), mix)


@pytest.mark.parametrize("name", sorted(D.MIXTURE_PRESETS))
def test_presets_well_separated_inside_box(name):
    m = D.mixture_preset(name)
    x, k = D.gaussian_mixture_2d(4000, generator=gen(2), preset=name)
    assert x.shape == (4000, 2) and (x.abs() <= 1).float().mean() > 0.99
    # responsibilities: each point's own component is nearly certain
    comp = torch.distributions.MultivariateNormal(m.means.double(), m.covs.double())
    lp = comp.log_prob(x.double()[:, None]) + m.weights.double().log()
    resp = lp.softmax(1)[torch.arange(len(k)), k]
    assert (resp > 0.9).float().mean() > 0.97


# ----------------------------------------------------------------------------- digits
def test_digits_scaling_and_split():
    from sklearn.datasets import load_digits

    x, y = D.digits()
    raw = torch.from_numpy(load_digits().images).float()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], raw / 16 * 2 - 1)
    assert x.min() == -1 and x.max() == 1
    tr, te = D.digits(split="train"), D.digits(split="test")
    assert len(tr[1]) + len(te[1]) == 1797 and len(te[1]) == 360
    assert torch.equal(te[0], x[::5])
    x16, _ = D.digits(16)
    assert x16.shape == (1797, 1, 16, 16) and x16.min() >= -1 and x16.max() <= 1
    x12, _ = D.digits(12)                                      # 3x3 blocks of 4 pixels (GDM Fig. 5)
    assert x12.shape == (1797, 1, 12, 12) and x12.min() >= -1 and x12.max() <= 1
    with pytest.raises(ValueError, match="at least 2"):
        D.digits(1)


# ----------------------------------------------------------------------------- shapes
def test_shapes_factors_area_centroid_hue():
    size = 32
    x, f = D.shapes(64, size, generator=gen(3))
    assert x.shape == (64, 3, size, size) and x.dtype == torch.float32
    assert torch.equal(x, D.shapes(64, size, generator=gen(3))[0])
    assert x.min() >= -1 and x.max() <= 1 and (x[:, :, 0, 0] == -1).all()  # constant background
    assert f.as_tensor().shape == (64, 5) and f.names == D.SHAPE_FACTOR_NAMES
    assert set(f.shape.tolist()) == {0, 1, 2}
    # coverage alpha = max_c (x+1)/2 integrates to the analytic area of each shape
    alpha = ((x + 1) / 2).amax(1)
    s = f.scale.double()
    area = torch.stack([4 * s**2, math.pi * s**2, 3 * math.sqrt(3) / 4 * s**2], 1)[torch.arange(64), f.shape]
    assert torch.allclose(alpha.sum((1, 2)).double() / size**2, area, rtol=0.04)


def test_shapes_translation_equivariance():
    f = D.sample_shape_factors(16, generator=gen(4))
    size = 32  # shapes keep >= 1.6 px from the border, so a 1-px shift only wraps background
    moved = D.ShapeFactors(f.shape, f.x + 1 / size, f.y - 1 / size, f.scale, f.hue)
    a, b = D.render_shapes(f, size), D.render_shapes(moved, size)
    assert torch.allclose(b, torch.roll(a, shifts=(-1, 1), dims=(-2, -1)), atol=1e-4)
    with pytest.raises(ValueError, match=">= 8"):
        D.shapes(4, 4)


# ----------------------------------------------------------------------------- Gaussian random fields
@pytest.mark.parametrize("size,channels,power,k0,sigma",
                         [(8, 1, 2.0, 1.0, 1 / 3), ((4, 6), 2, 1.5, 0.5, 0.2)])
def test_gaussian_random_field_draws_the_numbers_it_always_drew(size, channels, power, k0, sigma):
    """Byte for byte the formula the committed results came from: w ~ N(0, I) in float64 pixels,
    x = ifft2(√S ⊙ fft2(w)) with S ∝ (|k|² + k0²)^(−power/2) scaled to mean σ², re-derived here."""
    H, W = (size, size) if isinstance(size, int) else size
    ky = torch.fft.fftfreq(H, dtype=torch.float64) * H
    kx = torch.fft.fftfreq(W, dtype=torch.float64) * W
    S = (ky[:, None] ** 2 + kx[None, :] ** 2 + k0**2) ** (-power / 2)
    S = S * (sigma**2 / S.mean())
    w = torch.randn(5, channels, H, W, generator=gen(5), dtype=torch.float64)
    old = torch.fft.ifft2(torch.fft.fft2(w, norm="ortho") * S.sqrt(), norm="ortho").real.float()
    new = D.gaussian_random_field(5, size, power=power, k0=k0, sigma=sigma, channels=channels,
                                  generator=gen(5))
    assert new.dtype == torch.float32 and torch.equal(new, old)
    assert torch.equal(D.make_dataset("grf", n=4, size=8, seed=3).x,
                       D.gaussian_random_field(4, 8, generator=gen(3)))


# ----------------------------------------------------------------------------- paper-dataset loaders
def write_idx(path, arr: np.ndarray):
    """The MNIST idx format: zero bytes, type 0x08 (ubyte), ndim, big-endian int32 dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                     + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_loader_offline(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    imgs = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 5), ("t10k", 3))}
    labs = {s: rng.integers(0, 10, len(v), dtype=np.uint8) for s, v in imgs.items()}
    for s in imgs:
        write_idx(tmp_path / folder / "raw" / f"{s}-images-idx3-ubyte", imgs[s])
        write_idx(tmp_path / folder / "raw" / f"{s}-labels-idx1-ubyte", labs[s])
    tr = D.load_dataset(name, tmp_path)
    assert tr.x.shape == (5, 1, 28, 28) and tr.x.dtype == torch.float32
    assert torch.allclose(tr.x[:, 0], torch.from_numpy(imgs["train"]).float() / 127.5 - 1)
    assert torch.equal(tr.y, torch.from_numpy(labs["train"]).long())
    te = D.load_dataset(name, tmp_path, split="test", image_size=14, n=2)
    assert te.x.shape == (2, 1, 14, 14) and te.x.min() >= -1 and te.x.max() <= 1
    with pytest.raises(ValueError, match="split"):
        D.load_dataset(name, tmp_path, split="val")


def test_missing_data_errors_name_path_and_remedy(tmp_path):
    for name, part in (("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py"), ("pcam", "pcam")):
        with pytest.raises(D.DatasetNotFoundError, match="download=True") as e:
            D.load_dataset(name, tmp_path)
        assert str(tmp_path / part) in str(e.value) and isinstance(e.value, FileNotFoundError)
    with pytest.raises(D.DatasetNotFoundError):
        D.load_dataset(f"imagefolder:{tmp_path}", tmp_path)
    with pytest.raises(ValueError, match="cifar10"):
        D.load_dataset("imagenet", tmp_path)


def write_cifar(root, rng):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batches = {}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {"batch_label": f, "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
             "labels": rng.integers(0, 10, 2).tolist(), "filenames": ["a.png", "b.png"]}
        raw = pickle.dumps(d, protocol=2)
        if f == "test_batch":  # the real files come from numpy 1, which names numpy.core
            raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (base / f).write_bytes(raw)
        batches[f] = d
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return batches


def test_cifar10_loader_offline(tmp_path):
    batches = write_cifar(tmp_path, np.random.default_rng(1))
    tr = D.load_dataset("cifar10", tmp_path)
    assert tr.x.shape == (10, 3, 32, 32) and tr.y.tolist() == sum(
        (batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    row = batches["data_batch_2"]["data"][1]  # example 3: R plane, G plane, B plane, row-major
    c, h, w = 2, 5, 7
    assert tr.x[3, c, h, w] == torch.tensor(row[c * 1024 + h * 32 + w] / 127.5 - 1, dtype=torch.float32)
    te = D.load_dataset("cifar10", tmp_path, split="test")
    assert te.x.shape == (2, 3, 32, 32) and te.y.tolist() == batches["test_batch"]["labels"]
    assert torch.equal(D.to_uint8(te.x).reshape(2, -1), torch.from_numpy(batches["test_batch"]["data"]))


def test_cifar_reader_refuses_foreign_pickles(tmp_path):
    write_cifar(tmp_path, np.random.default_rng(2))

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D.load_dataset("cifar10", tmp_path, split="test")


def test_imagefolder_loader(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    arrs = {}
    for cls in ("dog", "cat"):
        for i in range(2):
            a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            (tmp_path / "afhq" / "train" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(tmp_path / "afhq" / "train" / cls / f"{i}.png")
            arrs[(cls, i)] = a
    ds = D.load_dataset(f"imagefolder:{tmp_path / 'afhq'}", split="train")
    assert ds.x.shape == (4, 3, 8, 8) and ds.y.tolist() == [0, 0, 1, 1]  # cat, cat, dog, dog
    assert torch.allclose(ds.x[2], torch.from_numpy(arrs[("dog", 0)]).permute(2, 0, 1).float() / 127.5 - 1)
    assert D.load_dataset(f"imagefolder:{tmp_path / 'afhq'}", image_size=4).x.shape == (4, 3, 4, 4)
    # flat folder (FFHQ style): label 0; non-square images are centre-cropped
    (tmp_path / "flat").mkdir()
    Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)).save(tmp_path / "flat" / "a.png")
    flat = D.load_dataset(f"imagefolder:{tmp_path / 'flat'}")
    assert flat.x.shape == (1, 3, 6, 6) and flat.y.tolist() == [0]
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "flat" / "b.png")
    with pytest.raises(ValueError, match="image_size"):
        D.load_dataset(f"imagefolder:{tmp_path / 'flat'}")


def test_pcam_loader(tmp_path):
    base = tmp_path / "pcam"
    base.mkdir()
    xs = np.random.default_rng(4).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    try:
        import h5py
    except ImportError:
        for v in "xy":
            (base / f"camelyonpatch_level_2_split_valid_{v}.h5").write_bytes(b"")
        with pytest.raises(ImportError, match="h5py"):
            D.load_dataset("pcam", tmp_path, split="val")
        pytest.skip("h5py is not installed: only the missing-h5py error was tested")
    with h5py.File(base / "camelyonpatch_level_2_split_valid_x.h5", "w") as f:
        f["x"] = xs
    with h5py.File(base / "camelyonpatch_level_2_split_valid_y.h5", "w") as f:
        f["y"] = np.array([0, 1, 1], dtype=np.uint8).reshape(3, 1, 1, 1)
    ds = D.load_dataset("pcam", tmp_path, split="val")
    assert ds.x.shape == (3, 3, 96, 96) and ds.y.tolist() == [0, 1, 1]
    assert torch.allclose(ds.x[1], torch.from_numpy(xs[1]).permute(2, 0, 1).float() / 127.5 - 1)


# ----------------------------------------------------------------------------- dequantisation, stats
def test_dequantize_cells_and_determinism():
    k = torch.randint(0, 256, (2000, 3), generator=gen(8), dtype=torch.uint8)
    y = D.dequantize(k, generator=gen(9))
    assert y.dtype == torch.float32 and y.min() >= -1 and y.max() < 1
    cell = (y.double() + 1) * 128  # = k + u
    assert torch.equal(cell.floor().long(), k.long())
    assert abs((cell - k.double()).mean().item() - 0.5) < 0.02  # u ~ U(0, 1)
    x = k.float() / 127.5 - 1  # the same pixels as load_dataset gives them
    assert torch.equal(D.dequantize(x, generator=gen(9)), y)
    assert torch.equal(D.to_uint8(x), k)
    with pytest.raises(ValueError, match="8-bit"):
        D.dequantize(torch.tensor([0.123]))


def test_datastats_cached_content_addressed(tmp_path):
    from safetensors.torch import save_file

    x = torch.randn(50, 1, 4, 4, generator=gen(10))
    st = D.DataStats.compute(x, "toy/set", cache_dir=tmp_path)
    assert torch.allclose(st.mean, x.mean(0), atol=1e-6) and st.n == 50
    assert torch.allclose(st.std, x.std(0, correction=0), atol=1e-6)
    path = D.DataStats.cache_path(x, "toy/set", tmp_path)
    assert path.suffix == ".safetensors" and [p.name for p in tmp_path.iterdir()] == [path.name]
    # the second call reads the cache: prove it by planting different numbers there
    save_file({"mean": torch.zeros(1, 4, 4), "std": torch.ones(1, 4, 4), "n": torch.tensor(7)}, str(path))
    again = D.DataStats.compute(x, "toy/set", cache_dir=tmp_path)
    assert again.n == 7 and torch.equal(again.mean, torch.zeros(1, 4, 4))
    assert D.DataStats.cache_path(x + 1, "toy/set", tmp_path) != path
    assert torch.allclose(st.add_mean(st.remove_mean(x)), x)
    assert D.DataStats.compute(x, "t", cache_dir=None).n == 50


# ----------------------------------------------------------------------------- dispatcher
def test_make_dataset_dispatch(tmp_path):
    a = D.make_dataset("shapes", n=8, size=16, seed=1)
    assert a.x.shape == (8, 3, 16, 16) and set(a.factors) == set(D.SHAPE_FACTOR_NAMES) and len(a) == 8
    assert torch.equal(a.x, D.make_dataset("shapes", n=8, size=16, seed=1).x)
    assert not torch.equal(a.x, D.make_dataset("shapes", n=8, size=16, seed=2).x)
    assert D.make_dataset("digits", n=10, size=16).x.shape == (10, 1, 16, 16)
    assert D.make_dataset("grf", n=4, size=8).x.shape == (4, 1, 8, 8)
    assert D.make_dataset("digits", n=10).x.shape == (10, 1, 8, 8)
    m = D.make_dataset("mixture:ring8", n=16)
    assert m.x.shape == (16, 2) and m[0][1] == m.y[0]
    with pytest.raises(D.DatasetNotFoundError):
        D.make_dataset("mnist", root=tmp_path)
    with pytest.raises(ValueError, match="mixture:ring8"):
        D.make_dataset("imagenet")


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", [0, -3, 2.5, True, None])
def test_generators_refuse_bad_sample_counts(n):
    for make in (lambda: D.shapes(n), lambda: D.sample_shape_factors(n),
                 lambda: D.gaussian_random_field(n, 8), lambda: D.gaussian_mixture_2d(n)):
        with pytest.raises(ValueError, match="number of"):
            make()
    if n is not None:
        for name in ("digits", "shapes", "grf", "mixture:ring8"):
            with pytest.raises(ValueError, match="number of examples"):
                D.make_dataset(name, n=n)
        with pytest.raises(ValueError, match="number of examples"):
            D.load_dataset("mnist", "nowhere", n=n)


def test_bad_sizes_and_mismatched_labels():
    for size in (0, (4,), (4, 0), (4, 4, 4), "8"):
        with pytest.raises(ValueError, match="size"):
            D.gaussian_random_field(2, size)
    with pytest.raises(ValueError, match="channels"):
        D.gaussian_random_field(2, 8, channels=0)
    with pytest.raises(ValueError, match="k0"):
        D.gaussian_random_field(2, 8, k0=-1.0)
    with pytest.raises(ValueError, match=r"3 examples in x but \{'y': 2\}"):
        D.TensorData(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="'hue': 4"):
        D.TensorData(torch.zeros(3, 2), factors={"hue": torch.zeros(4)})


def test_imagefolder_relative_path_is_looked_up_under_root(tmp_path):
    from PIL import Image

    (tmp_path / "ffhq").mkdir()
    a = np.random.default_rng(5).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "ffhq" / "0.png")
    ds = D.load_dataset("imagefolder:ffhq", root=tmp_path)
    assert torch.allclose(ds.x[0], torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1)
    with pytest.raises(D.DatasetNotFoundError):
        D.load_dataset("imagefolder:ffhq", root=tmp_path / "elsewhere")
