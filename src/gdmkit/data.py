"""Datasets: offline generators (mixtures, digits, shapes, Gaussian random fields), the papers'
datasets from a data root, dequantisation and cached per-pixel statistics (GUD App. B).

Every generator is deterministic given its ``generator`` and returns float32 tensors, images
``(N, C, H, W)`` and toy data ``(N, d)``, scaled to [-1, 1]. Data with an exact density is drawn from
its oracle (``oracles.GaussianMixture``, ``oracles.GaussianRandomField``: density, exact denoiser); the
shapes' factor estimator is the metric ``metrics.estimate_shape_factors``.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from . import tensors
from .files import atomic_write
from .oracles import GaussianMixture, GaussianRandomField

__all__ = [
    "TensorData", "MIXTURE_PRESETS", "mixture_preset", "gaussian_mixture_2d", "digits", "SHAPE_KINDS",
    "SHAPE_FACTOR_NAMES", "ShapeFactors", "sample_shape_factors", "render_shapes", "shapes",
    "gaussian_random_field", "DatasetNotFoundError", "PAPER_DATASETS", "load_dataset", "to_uint8",
    "dequantize", "DataStats", "DATASET_NAMES", "make_dataset",
]


def _check_n(n) -> int:
    """``n`` (a number of examples) as a positive int, or ValueError."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n (the number of examples) must be a positive integer, got {n!r}")
    return int(n)


@dataclass
class TensorData(Dataset):
    """In-memory dataset: ``x`` (N, *event_shape) in [-1, 1], optional labels ``y`` (N,) and
    named factors of variation (each (N,)). Indexing gives ``x[i]`` or ``(x[i], y[i])``."""

    x: Tensor
    y: Tensor | None = None
    name: str = ""
    factors: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        N = self.x.shape[0]
        bad = {k: len(v) for k, v in {"y": self.y, **self.factors}.items() if v is not None and len(v) != N}
        if bad:
            raise ValueError(f"TensorData has {N} examples in x but {bad} in the labels / factors named; "
                             "give one label and one value of each factor per example")

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i] if self.y is None else (self.x[i], self.y[i])


# --------------------------------------------------------------------------- Gaussian mixtures
# The mixture (sampling, density, exact posterior mean) is oracles.GaussianMixture; here: GDM Fig. 1a presets
def _isotropic(means: Tensor, std: float) -> GaussianMixture:
    K, d = means.shape
    return GaussianMixture(torch.full((K,), 1.0 / K), means, std**2 * torch.eye(d).expand(K, d, d).clone())


def _pinwheel(arms: int = 5, radius: float = 0.55, radial_std: float = 0.18, tangential_std: float = 0.04):
    ang = 2 * math.pi * torch.arange(arms, dtype=torch.float64) / arms
    rot_ang = ang + 0.35  # a twist so arms are not purely radial
    means = radius * torch.stack([ang.cos(), ang.sin()], 1)
    R = torch.stack([torch.stack([rot_ang.cos(), -rot_ang.sin()], 1),
                     torch.stack([rot_ang.sin(), rot_ang.cos()], 1)], 1)  # (K, 2, 2)
    D = torch.diag(torch.tensor([radial_std**2, tangential_std**2], dtype=torch.float64))
    cov = R @ D @ R.transpose(1, 2)
    return GaussianMixture(torch.full((arms,), 1.0 / arms), means.float(), cov.float())


MIXTURE_PRESETS = {
    # 5x5 grid on [-0.8, 0.8]^2, spacing 0.4, std 0.04 (10 std apart)
    "grid2d": lambda: _isotropic(torch.cartesian_prod(*[torch.linspace(-0.8, 0.8, 5)] * 2), 0.04),
    # 8 components on a circle of radius 0.7, std 0.05
    "ring8": lambda: _isotropic(0.7 * torch.stack([torch.cos(torch.arange(8) * math.pi / 4),
                                                   torch.sin(torch.arange(8) * math.pi / 4)], 1), 0.05),
    # 5 elongated, rotated arms
    "pinwheel": _pinwheel,
}


def mixture_preset(name: str) -> GaussianMixture:
    """A well-separated 2-D mixture inside [-1, 1]² (the GDM Fig. 1a toy)."""
    if name not in MIXTURE_PRESETS:
        raise ValueError(f"unknown mixture preset {name!r}; choose one of {sorted(MIXTURE_PRESETS)}")
    return MIXTURE_PRESETS[name]()


def gaussian_mixture_2d(n: int, *, generator: torch.Generator | None = None,
                        preset: str = "ring8") -> tuple[Tensor, Tensor]:
    """``n`` samples (n, 2) of a preset mixture, with component labels (n,)."""
    return mixture_preset(preset).sample(n, generator, return_labels=True)


# --------------------------------------------------------------------------- digits
def digits(size: int = 8, *, split: str | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), values 0..16 -> [-1, 1].

    Any other ``size`` (e.g. 16, or 12 for 3×3 blocks) resamples bilinearly and clamps to [-1, 1].
    ``split``: None (all), "train" (index % 5 != 0) or "test" (index % 5 == 0), fixed and deterministic.
    Returns images (N, 1, size, size) float32 and labels (N,) int64.
    """
    from sklearn.datasets import load_digits

    if size < 2:
        raise ValueError(f"digits size must be at least 2 pixels, got {size}")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    d = load_digits()
    x = torch.from_numpy(d.images).float()[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
    y = torch.from_numpy(d.target).long()
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1.0, 1.0)
    if split is not None:
        keep = (torch.arange(len(y)) % 5 == 0) == (split == "test")
        x, y = x[keep], y[keep]
    return x.contiguous(), y


# --------------------------------------------------------------------------- procedural shapes
SHAPE_KINDS = ("square", "circle", "triangle")
SHAPE_FACTOR_NAMES = ("shape", "x", "y", "scale", "hue")


@dataclass(frozen=True, eq=False)
class ShapeFactors:
    """Factors of variation, each (N,): ``shape`` index into SHAPE_KINDS; centre ``x`` (column) and
    ``y`` (row) in [0, 1] image units; ``scale`` the half side / radius / circumradius in image
    units; ``hue`` in [0, 1) (circular)."""

    shape: Tensor
    x: Tensor
    y: Tensor
    scale: Tensor
    hue: Tensor
    names = SHAPE_FACTOR_NAMES

    def as_tensor(self) -> Tensor:
        """(N, 5) float tensor in the order of ``names``."""
        return torch.stack([getattr(self, k).float() for k in self.names], 1)


def sample_shape_factors(n: int, *, generator: torch.Generator | None = None) -> ShapeFactors:
    """Independent uniform factors: shape in {0,1,2}, x, y ~ U(0.3, 0.7), scale ~ U(0.12, 0.25),
    hue ~ U(0, 1). These ranges keep every shape inside the image."""
    n = _check_n(n)
    u = tensors.rand((n, 4), generator, device="cpu")
    kind = tensors.randint(0, len(SHAPE_KINDS), (n,), generator, device="cpu")
    return ShapeFactors(kind, 0.3 + 0.4 * u[:, 0], 0.3 + 0.4 * u[:, 1], 0.12 + 0.13 * u[:, 2], u[:, 3])


def _hue_to_rgb(h: Tensor) -> Tensor:
    """Full-saturation, full-value HSV -> RGB in [0, 1]: (N,) -> (N, 3); max channel is 1."""
    h6 = 6 * h[:, None]
    return torch.stack([(h6 - 3).abs() - 1, 2 - (h6 - 2).abs(), 2 - (h6 - 4).abs()], 1)[..., 0].clamp(0, 1)


def render_shapes(f: ShapeFactors, size: int = 16) -> Tensor:
    """Render factors to images (N, 3, size, size) in [-1, 1], black background (-1).

    Coverage α = clamp(1/2 − sdf · size, 0, 1) (a one-pixel anti-aliasing ramp of the signed
    distance), image = −1 + 2 α rgb(hue); so α = max_c (image + 1)/2.
    """
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    dx = c[None, None, :] - f.x[:, None, None]  # (N, 1, W)
    dy = c[None, :, None] - f.y[:, None, None]  # (N, H, 1)
    s = f.scale[:, None, None]
    square = torch.maximum(dx.abs(), dy.abs()) - s
    circle = torch.sqrt(dx**2 + dy**2) - s
    # equilateral triangle pointing up (rows grow downward), circumradius s, inradius s/2
    tri = torch.maximum(dy.expand_as(square), 0.5 * math.sqrt(3) * dx.abs() - 0.5 * dy) - s / 2
    sdf = torch.stack([square, circle, tri], 1)[torch.arange(len(s)), f.shape]  # (N, H, W)
    alpha = (0.5 - sdf * size).clamp(0, 1)
    return (-1 + 2 * alpha[:, None] * _hue_to_rgb(f.hue)[:, :, None, None]).float()


def shapes(n: int, size: int = 16, *,
           generator: torch.Generator | None = None) -> tuple[Tensor, ShapeFactors]:
    """Procedural images with known factors: returns images (n, 3, size, size) and ShapeFactors."""
    if size < 8:
        raise ValueError(f"shapes size must be >= 8 pixels (16 or 32 recommended), got {size}")
    f = sample_shape_factors(n, generator=generator)
    return render_shapes(f, size), f


# --------------------------------------------------------------------------- Gaussian random fields
def gaussian_random_field(n: int, size, *, power: float = 2.0, k0: float = 1.0, sigma: float = 1 / 3,
                          channels: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """n stationary periodic Gaussian textures (n, channels, H, W), float32: x = F⁻¹(√S ⊙ F w), w white,
    S ∝ (|k|² + k0²)^(−power/2) with pixel variance σ², ``size`` an int or (H, W); channels independent.

    Drawn from :class:`gdmkit.oracles.GaussianRandomField` (same arguments), which has the exact
    log-density, spectrum and denoiser. Not clipped; with σ = 1/3 about 99.7 % of pixels lie in [-1, 1].
    """
    return GaussianRandomField(size, channels, power, k0, sigma).sample(n, generator)


# --------------------------------------------------------------------------- paper datasets
class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are not under the data root."""


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")
_PCAM_SPLIT = {"train": "train", "test": "test", "val": "valid"}
_TV_DATASETS = ("mnist", "fashion_mnist", "cifar10", "pcam")
PAPER_DATASETS = (*_TV_DATASETS, "imagefolder:<path>")
_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def _missing(name: str, paths: list[Path], how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found: expected {', '.join(str(p) for p in paths)}. Pass download=True on a "
        f"machine with network, or place the files there ({how}).")


def _load_mnist(cls_name: str, root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    import torchvision

    raw = root / cls_name / "raw"
    if not download and not all((raw / f).is_file() for f in _MNIST_FILES):
        raise _missing(cls_name, [raw / f for f in _MNIST_FILES], "the unzipped idx-ubyte files")
    ds = getattr(torchvision.datasets, cls_name)(str(root), train=split == "train", download=download)
    return ds.data[:, None], torch.as_tensor(ds.targets).long()  # uint8 (N, 1, 28, 28)


class _CifarUnpickler(pickle.Unpickler):
    """Only what the CIFAR python batches need: numpy array reconstruction, nothing executable."""

    _OK = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            import numpy as np  # numpy 1 pickles name numpy.core, numpy 2 numpy._core
            return (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
        if (module, name) in self._OK:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}; refusing to load it")


def _load_cifar10(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    # torchvision's CIFAR10 checks the md5 of every real batch, so we read the same on-disk format
    # (python pickles under cifar-10-batches-py/) ourselves, with a restricted unpickler.
    base = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if download:
        import torchvision
        torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
    if not all((base / f).is_file() for f in files):
        raise _missing("CIFAR-10", [base / f for f in files], "extract cifar-10-python.tar.gz")
    xs, ys = [], []
    for f in files:
        with open(base / f, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="latin1").load()
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        xs.append(torch.from_numpy(d["data"].reshape(-1, 3, 32, 32)))
        ys.append(torch.as_tensor(d["labels"]).long())
    return torch.cat(xs), torch.cat(ys)


def _load_pcam(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    import torchvision

    base = root / "pcam"
    names = [base / f"camelyonpatch_level_2_split_{_PCAM_SPLIT[split]}_{v}.h5" for v in "xy"]
    if not download and not all(p.is_file() for p in names):
        raise _missing("PCAM", names, "gunzip the camelyonpatch_*.h5.gz files")
    try:
        import h5py
    except ImportError as e:
        raise ImportError("PCAM is stored as HDF5 and needs h5py: add it (`uv add h5py`)") from e
    if download:
        torchvision.datasets.PCAM(str(root), split=split, download=True)
    with h5py.File(names[0], "r") as fx, h5py.File(names[1], "r") as fy:
        x = torch.from_numpy(fx["x"][:]).permute(0, 3, 1, 2)  # (N, 96, 96, 3) -> (N, 3, 96, 96)
        y = torch.from_numpy(fy["y"][:]).reshape(-1).long()
    return x.contiguous(), y


def _load_folder(path: Path, split: str, image_size: int | None, n: int | None) -> tuple[Tensor, Tensor]:
    """Images under ``path/split`` (if that folder exists) else ``path``, recursively, sorted; the
    label is the index of the first-level subfolder (torchvision ImageFolder's convention), 0 if
    flat (FFHQ). Non-square images are centre-cropped; ``image_size`` resizes (bicubic)."""
    import numpy as np
    from PIL import Image

    base = path / split if (path / split).is_dir() else path
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in _IMG_EXT)[:n]
    if not files:
        raise _missing(f"image folder {path}", [base / "**/*.png"], "one image file per example")
    classes = sorted({p.relative_to(base).parts[0] for p in files if len(p.relative_to(base).parts) > 1})
    xs, ys = [], []
    for p in files:
        im = Image.open(p).convert("RGB")
        s = min(im.size)
        im = im.crop(((im.width - s) // 2, (im.height - s) // 2, (im.width + s) // 2, (im.height + s) // 2))
        if image_size is not None:
            im = im.resize((image_size, image_size), Image.BICUBIC)
        xs.append(torch.from_numpy(np.array(im, dtype=np.uint8)))  # (H, W, 3)
        parts = p.relative_to(base).parts
        ys.append(classes.index(parts[0]) if len(parts) > 1 else 0)
    if len({x.shape for x in xs}) > 1:
        raise ValueError(f"images under {base} differ in size; pass image_size= to resize them")
    return torch.stack(xs).permute(0, 3, 1, 2).contiguous(), torch.tensor(ys)


def load_dataset(name: str, root: str | os.PathLike = "data", split: str = "train", *, download: bool = False,
                 image_size: int | None = None, n: int | None = None) -> TensorData:
    """A paper dataset as TensorData: x (N, C, H, W) float32 in [-1, 1] (8-bit values k mapped to
    k/127.5 − 1), y (N,) labels. Never downloads unless ``download=True``.

    name : "mnist", "fashion_mnist", "cifar10", "pcam" or "imagefolder:<path>" (AFHQ, CelebA-HQ,
        FFHQ; a relative <path> under ``root`` if it is there, else from the working folder); split : "train" / "test" ("val" for pcam; a subfolder for image folders);
        n : keep the first n examples. After ``image_size`` resizing pixels leave the 8-bit
        grid, so dequantize (if wanted) at the native size.
    """
    if n is not None:
        n = _check_n(n)
    root = Path(root)
    ok_splits = ("train", "test", "val") if name == "pcam" else ("train", "test")
    if split not in ok_splits and not name.startswith("imagefolder:"):
        raise ValueError(f"split for {name} must be one of {ok_splits}, got {split!r}")
    if name in ("mnist", "fashion_mnist"):
        x, y = _load_mnist({"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name], root, split, download)
    elif name == "cifar10":
        x, y = _load_cifar10(root, split, download)
    elif name == "pcam":
        x, y = _load_pcam(root, split, download)
    elif name.startswith("imagefolder:"):  # a relative folder is looked up under root first
        folder = Path(name.split(":", 1)[1])
        x, y = _load_folder(root / folder if (root / folder).is_dir() else folder, split, image_size, n)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(PAPER_DATASETS)}")
    x, y = x[:n], y[:n]
    x = x.float() / 127.5 - 1.0
    if image_size is not None and x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False).clamp(-1, 1)
    return TensorData(x.contiguous(), y, name=name)


# --------------------------------------------------------------------------- dequantisation, stats
def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] -> 8-bit integers round((x + 1) · 127.5), clamped to 0..255."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def dequantize(x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation (GUD App. B): y = (k + u)/128 − 1 with u ~ U(0, 1), k in 0..255.

    x : uint8 tensor of k, or float in [-1, 1] on the 8-bit grid k/127.5 − 1 (as load_dataset gives).
    Returns float32 in [-1, 1). Each pixel maps to a cell of width 2/256, so the bits/dim of the
    8-bit data are −log p(y)/(D ln 2) + 7.
    """
    if x.dtype == torch.uint8:
        k = x.double()
    else:
        k = ((x.double() + 1) * 127.5).round()
        if (k / 127.5 - 1 - x.double()).abs().max() > 1e-3 or k.min() < 0 or k.max() > 255:
            raise ValueError("x is not 8-bit data in [-1, 1] (k/127.5 - 1); pass the uint8 pixels instead")
    u = tensors.rand(x.shape, generator, device=x.device, dtype=torch.float64)
    return ((k + u) / 128 - 1).float()


@dataclass(frozen=True, eq=False)
class DataStats:
    """Per-pixel mean and std (event_shape), computed once per dataset and cached on disk (GUD App. B:
    the empirical training mean is removed before diffusion)."""

    mean: Tensor
    std: Tensor
    n: int

    @staticmethod
    def cache_path(x: Tensor, name: str, cache_dir: str | os.PathLike = "data/cache") -> Path:
        """Content address: dataset name + shape + sha256 of the data bytes."""
        digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
        shape = "x".join(map(str, x.shape))
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        return Path(cache_dir) / f"stats_{safe}_{shape}_{digest}.safetensors"

    @classmethod
    def compute(cls, x: Tensor, name: str, *,
                cache_dir: str | os.PathLike | None = "data/cache") -> DataStats:
        """Stats of x (N, *event_shape); loaded from the cache when present, written otherwise
        (``cache_dir=None`` disables caching)."""
        from safetensors.torch import load_file, save_file

        path = cls.cache_path(x, name, cache_dir) if cache_dir is not None else None
        if path is not None and path.is_file():
            t = load_file(str(path))
            return cls(t["mean"], t["std"], int(t["n"]))
        xd = x.double()
        stats = cls(xd.mean(0).float(), xd.std(0, correction=0).float(), x.shape[0])
        if path is not None:
            table = {"mean": stats.mean.contiguous(), "std": stats.std.contiguous(),
                     "n": torch.tensor(stats.n)}
            atomic_write(path, lambda tmp: save_file(table, tmp))
        return stats

    def remove_mean(self, x: Tensor) -> Tensor:
        return x - self.mean.to(x)

    def add_mean(self, x: Tensor) -> Tensor:
        return x + self.mean.to(x)


# --------------------------------------------------------------------------- dispatcher
DATASET_NAMES = ("digits", "shapes", "grf", *(f"mixture:{p}" for p in MIXTURE_PRESETS), *PAPER_DATASETS)


def make_dataset(name: str, *, n: int | None = None, size: int | None = None, seed: int = 0,
                 root: str | os.PathLike | None = None, split: str | None = "train") -> TensorData:
    """One entry point for notebooks: "digits", "shapes", "grf", "mixture:<preset>" or a paper
    dataset (from ``root``, default "data"). ``n`` examples (first n for fixed datasets), image
    ``size``; generated data is a deterministic function of ``seed``. ``split=None`` gives all
    digits."""
    if n is not None:
        n = _check_n(n)
    g = torch.Generator().manual_seed(seed)
    if name == "digits":
        x, y = digits(size or 8, split=split)
        return TensorData(x[:n], y[:n], name=f"digits{x.shape[-1]}")
    if name == "shapes":
        x, f = shapes(1024 if n is None else n, size or 16, generator=g)
        factors = {k: getattr(f, k) for k in f.names}
        return TensorData(x, f.shape, name=f"shapes{x.shape[-1]}", factors=factors)
    if name == "grf":
        x = gaussian_random_field(1024 if n is None else n, size or 16, generator=g)
        return TensorData(x, name=f"grf{size or 16}")
    if name.startswith("mixture:"):
        x, y = mixture_preset(name.split(":", 1)[1]).sample(4096 if n is None else n, g, return_labels=True)
        return TensorData(x, y, name=name)
    if name in _TV_DATASETS or name.startswith("imagefolder:"):
        return load_dataset(name, root or "data", split or "train", image_size=size, n=n)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
