"""Stand-in data sets and weights in the real on-disk formats, for dry runs of the paper profiles.

The paper profiles read CIFAR-10's python batches, MNIST's IDX files, PCAM's HDF5, image folders (AFHQ,
CelebA-HQ, FFHQ), torch-fidelity's Inception weights (the file FID loads) and torchvision's VGG-19 state
dict. None of them can be downloaded here, so these writers make small files of exactly those formats,
filled with random pixels and randomly initialised weights, that the very loaders of the paper profile
then read (``data.load_dataset``, ``features.inception_fid``, ``features.VGG19Features``). Numbers computed
on them say nothing about the papers: every table a dry run writes is labelled as a stand-in run
(``scripts/run_notebook.py --dry-run``).

``write_all(root)`` writes every data set under ``root`` (the notebooks' ``data_root``) and the weights
under ``root/weights/``; it returns the environment variables that point the feature extractors there.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from . import files

__all__ = ["write_cifar10", "write_mnist", "write_pcam", "write_image_folder", "write_inception_weights",
           "write_vgg19_weights", "write_all", "IMAGE_FOLDERS"]

IMAGE_FOLDERS = {"afhq": ("cat", "dog", "wild"), "celebahq": (), "ffhq": ()}  # class subfolders (none: flat)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _smooth_images(rng: np.random.Generator, n: int, size: int, channels: int) -> np.ndarray:
    """uint8 (n, size, size, channels): random low-frequency blobs (not white noise, so that images have
    some spatial structure for the networks and metrics to act on)."""
    import torch  # here, not at the top: a runner that finds the stand-ins written never loads torch

    k = max(2, size // 8)
    coarse = rng.normal(size=(n, channels, k, k)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bicubic",
                                        align_corners=False)
    img = (t.clamp(-2, 2) / 2 * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    return img.permute(0, 2, 3, 1).numpy()


def write_cifar10(root: str | os.PathLike, n_per_batch: int = 8, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/``: data_batch_1..5 and test_batch, python pickles of
    {"batch_label", "data": uint8 (n, 3072) as R, G, B planes row-major, "labels", "filenames"}
    (8 per batch: 40 training images, at least as many as the dry runs train on; 05 sends each of them through
    Inception for the reference statistics of FID, at about 0.3 s an image on one core)."""
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    rng = _rng(seed)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        img = _smooth_images(rng, n_per_batch, 32, 3)  # (n, 32, 32, 3)
        data = img.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)
        d = {"batch_label": f"stand-in {f}", "data": data, "labels": rng.integers(0, 10, n_per_batch).tolist(),
             "filenames": [f"standin_{i}.png" for i in range(n_per_batch)]}
        (base / f).write_bytes(pickle.dumps(d, protocol=2))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    return base


def _write_idx(path: Path, arr: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (ubyte), ndim, big-endian uint32 dims, then the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                     + arr.astype(np.uint8).tobytes())


def write_mnist(root: str | os.PathLike, folder: str = "MNIST", n: int = 256, seed: int = 1) -> Path:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (MNIST or FashionMNIST)."""
    rng = _rng(seed)
    raw = Path(root) / folder / "raw"
    for split, m in (("train", n), ("t10k", max(1, n // 4))):
        _write_idx(raw / f"{split}-images-idx3-ubyte", _smooth_images(rng, m, 28, 1)[..., 0])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, m).astype(np.uint8))
    return raw


def write_pcam(root: str | os.PathLike, n: int = 64, seed: int = 2) -> Path:
    """``root/pcam/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``: x uint8 (n, 96, 96, 3),
    y uint8 (n, 1, 1, 1), as the PCAM release stores them."""
    import h5py

    rng = _rng(seed)
    base = Path(root) / "pcam"
    base.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = _smooth_images(rng, n, 96, 3)
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = rng.integers(0, 2, n).astype(np.uint8).reshape(n, 1, 1, 1)
    return base


def write_image_folder(path: str | os.PathLike, n: int = 320, size: int = 64,
                       classes: tuple[str, ...] = (), seed: int = 3) -> Path:
    """PNG files under ``path/train/<class>/`` (ImageFolder layout; AFHQ) or ``path/`` flat (FFHQ,
    CelebA-HQ), ``n`` in all, ``size`` × ``size`` RGB (320: enough for the dry runs' training and
    held-out images together)."""
    from PIL import Image

    rng = _rng(seed)
    path = Path(path)
    imgs = _smooth_images(rng, n, size, 3)
    for i, a in enumerate(imgs):
        folder = path / "train" / classes[i % len(classes)] if classes else path
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / f"standin_{i:05d}.png")
    return path


def _init_only(cls, *args, **kwargs):
    """An instance of ``cls`` whose constructor would load weights, built without loading any."""
    from unittest import mock

    with mock.patch("torch.load", return_value={}), mock.patch.object(cls, "load_state_dict"):
        return cls(*args, **kwargs)


def write_inception_weights(path: str | os.PathLike) -> Path:
    """torch-fidelity's Inception-v3 state dict (the file torchmetrics' FID loads), randomly initialised:
    the same keys and shapes as weights-inception-2015-12-05-6726825d.pth."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    net = _init_only(FeatureExtractorInceptionV3, "inception-v3-compat", ["2048"],
                     feature_extractor_weights_path="stand-in")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def write_vgg19_weights(path: str | os.PathLike) -> Path:
    """torchvision's VGG-19 state dict (vgg19-dcbbb0ee.pth's keys and shapes), randomly initialised,
    stored in float16 to halve the file (load_state_dict casts to float32)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in torchvision.models.vgg19(weights=None)
          .state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


def write_all(root: str | os.PathLike, *, image_size: int = 64, vgg: bool = True) -> dict[str, str]:
    """Every stand-in under ``root``; returns the environment variables the feature extractors read
    (``GDMKIT_INCEPTION_WEIGHTS``, ``GDMKIT_VGG19_WEIGHTS``). Files already there are kept.

    Safe to call from several processes at once (two dry runs started together): the writers take turns
    under a lock file, ``root/.standins.lock``, and each data set's folder and each weights file appears
    whole (written next to its place, then renamed), so an interrupted call leaves nothing half-written
    that a later one would take for complete."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".standins.lock"):
        for folder, write in (("cifar-10-batches-py", write_cifar10), ("MNIST", write_mnist),
                              ("FashionMNIST", lambda r: write_mnist(r, "FashionMNIST")), ("pcam", write_pcam),
                              *((name, lambda r, n=name, c=classes: write_image_folder(Path(r) / n, size=image_size,
                                                                                      classes=c))
                                for name, classes in IMAGE_FOLDERS.items())):
            if not (root / folder).is_dir():
                _write_folder(root, folder, write)
        env = {}
        inc = root / "weights" / "weights-inception-2015-12-05-6726825d.pth"
        if not inc.is_file():
            files.atomic_write(inc, write_inception_weights)
        env["GDMKIT_INCEPTION_WEIGHTS"] = str(inc)
        if vgg:
            v = root / "weights" / "vgg19-dcbbb0ee.pth"
            if not v.is_file():
                files.atomic_write(v, write_vgg19_weights)
            env["GDMKIT_VGG19_WEIGHTS"] = str(v)
    return env


def _write_folder(root: Path, folder: str, write) -> None:
    """``write(scratch)`` makes ``scratch/folder``, which is then renamed to ``root/folder`` in one step."""
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}."))
    try:
        write(scratch)
        os.replace(scratch / folder, root / folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive advisory lock on ``path`` for the block (POSIX ``flock``; where the platform has none,
    no lock: concurrent first calls then race, later ones find the files)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
