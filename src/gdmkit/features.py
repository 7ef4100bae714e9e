"""Feature extractors φ for the feature-space metrics, their training and their pretrained weights.

- :class:`FeatureExtractor` — the protocol: ``name`` (labels every metric computed with it) and
  ``φ(x)``, images (N, C, H, W) in [-1, 1] -> features (N, F);
- :class:`IdentityFeatures` (pixels), :class:`ClassifierFeatures` with :func:`train_classifier`
  (an offline stand-in for Inception, trained on the same dataset, always labelled as such);
- :class:`VGG19Features` (GDM §4.2's perceptual features) and the FID Inception network, from weights on
  disk only: :func:`find_weights` raises :class:`WeightsNotFoundError` saying where to put them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import tensors
from .data import to_uint8

__all__ = [
    "FeatureExtractor", "IdentityFeatures", "ClassifierFeatures", "train_classifier", "extract",
    "WeightsNotFoundError", "INCEPTION_URL", "VGG19_URL", "find_weights", "inception_fid", "fid_update",
    "inception_features", "fid_inception", "VGG19Features", "perceptual_features",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """``name`` labels every metric computed with it; calling maps images (N, C, H, W) in [-1, 1]
    to features (N, F)."""

    name: str

    def __call__(self, x: Tensor) -> Tensor: ...


@torch.no_grad()
def extract(features: FeatureExtractor, x: Tensor, batch_size: int = 256) -> Tensor:
    """φ(x) (N, F) in float64, computed ``batch_size`` images at a time (no gradients)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return torch.cat([features(c) for c in x.split(batch_size)]).double()


class IdentityFeatures:
    """φ(x) = flattened pixels (N, C·H·W)."""

    name = "pixels"

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class ClassifierFeatures(nn.Module):
    """Small CNN classifier; its penultimate activations (``width`` features) are the features.
    ``name`` is "classifier[<dataset>]": an offline stand-in for Inception, never called FID."""

    def __init__(self, channels: int, n_classes: int, dataset: str, width: int = 64):
        super().__init__()
        self.name = f"classifier[{dataset}]"
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.SiLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, width), nn.SiLU())
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Features (N, width) of images x (N, C, H, W)."""
        return self.body(x)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits (N, n_classes)."""
        return self.head(self.body(x))


def train_classifier(images: Tensor, labels: Tensor, steps: int = 300, *, dataset: str,
                     batch_size: int = 128, lr: float = 3e-3,
                     generator: torch.Generator | None = None) -> ClassifierFeatures:
    """Train a ClassifierFeatures on (images (N, C, H, W), labels (N,) in 0..K−1) with AdamW for
    ``steps`` minibatches; initialisation and batches come from ``generator`` (global RNG state untouched)."""
    tensors.image_shape(images.shape[1:], "train_classifier")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels; pass one label per image")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got steps={steps}, "
                         f"batch_size={batch_size}")
    seed = int(tensors.randint(0, 2**62, (1,), generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ClassifierFeatures(images.shape[1], int(labels.max()) + 1, dataset).to(images.device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        i = tensors.randint(0, images.shape[0], (batch_size,), generator, device=images.device)
        loss = F.cross_entropy(net.logits(images[i]), labels[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


# --------------------------------------------------------------------------- pretrained weights
class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on disk (we never download them)."""


INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbbb0ee.pth"


def find_weights(url: str, path: str | os.PathLike | None = None, env: str | None = None) -> Path:
    """Locate weights on disk: ``path`` (must exist), else ``$env``, else the torch hub cache
    (``torch.hub.get_dir()/checkpoints/<file name of url>``, where torch-fidelity and torchvision
    keep them). Raises WeightsNotFoundError naming the places searched and how to fill one."""
    hub = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if path is not None and not Path(path).is_file():
        raise WeightsNotFoundError(f"no weights file at {path}: pass the path of a copy of {url}")
    cands = [Path(p) for p in (path, os.environ.get(env) if env else None) if p] + [hub]
    for c in cands:
        if c.is_file():
            return c
    raise WeightsNotFoundError(
        f"weights not found at {', '.join(map(str, cands))}. Download {url} on a machine with network "
        f"and copy it to {hub}" + (f" or set ${env} to its path" if env else "") + ".")


def inception_fid(weights: str | os.PathLike | None = None):
    """torchmetrics' FrechetInceptionDistance (2048-d pool features, the standard TF-Inception weights
    from torch-fidelity) that keeps its reference features across ``reset()``. Weights come from
    ``weights``, $GDMKIT_INCEPTION_WEIGHTS or the torch hub cache; never downloaded."""
    path = find_weights(INCEPTION_URL, weights, "GDMKIT_INCEPTION_WEIGHTS")  # before the heavy import
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path),
                                    reset_real_features=False)


def fid_update(fid, images: Tensor, real: bool, batch_size: int = 64) -> None:
    """Feed images (N, C, H, W) in [-1, 1] to an :func:`inception_fid` as 8-bit RGB (C = 1 repeated)."""
    for chunk in images.split(batch_size):
        fid.update(to_uint8(chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk), real=real)


def inception_features(fid, images: Tensor, batch_size: int = 64) -> Tensor:
    """The 2048-d pool features (N, 2048), float64, that ``fid.update`` accumulates for images (N, C, H, W)
    in [-1, 1]: the same 8-bit RGB input as :func:`fid_update`, through the metric's own Inception."""
    with torch.no_grad():
        return torch.cat([fid.inception(to_uint8(c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c)).double()
                          .reshape(len(c), -1) for c in images.split(batch_size)])


def fid_inception(real: Tensor, fake: Tensor, *, weights: str | os.PathLike | None = None,
                  batch_size: int = 64) -> float:
    """FID between images real and fake (N, C, H, W) in [-1, 1] (see :func:`inception_fid`).
    For many fake sets against one reference use :class:`gdmkit.metrics.SampleQuality`."""
    fid = inception_fid(weights)
    fid_update(fid, real, True, batch_size)
    fid_update(fid, fake, False, batch_size)
    return float(fid.compute())


class VGG19Features(nn.Module):
    """torchvision VGG-19 (ImageNet weights from disk), 4096-d penultimate (fc7) activations of
    224x224 ImageNet-normalised inputs. name "VGG19"."""

    name = "VGG19"

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        path = find_weights(VGG19_URL, weights, "GDMKIT_VGG19_WEIGHTS")
        import torchvision

        net = torchvision.models.vgg19(weights=None)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net.classifier = net.classifier[:-1]
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Features (N, 4096) of images x (N, C, H, W) in [-1, 1], C = 1 or 3."""
        x = (x.expand(-1, 3, -1, -1) + 1) / 2
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


def perceptual_features(fallback: FeatureExtractor, *,
                        weights: str | os.PathLike | None = None) -> FeatureExtractor:
    """VGG-19 features (GDM §4.2) when the weights are on disk, else ``fallback`` (e.g. the dataset
    classifier); the returned extractor's ``name`` says which."""
    try:
        return VGG19Features(weights)
    except WeightsNotFoundError:
        return fallback
