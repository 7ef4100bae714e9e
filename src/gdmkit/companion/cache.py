"""A content-addressed cache of trained models: redrawing a figure never retrains, any real change does.

The key of a run holds what determines the trained weights, as configs, never as prose:

- ``loss.to_config()``: the path (basis, grouping, schedule, prior scale, target, weighting), the
  schedule sampler and the time sampler (:class:`gdmkit.paths.Loss`);
- ``net.to_config()`` and the fingerprint of the initial weights;
- the fingerprint of the training data;
- ``cfg.to_dict()`` (:class:`gdmkit.train.TrainConfig`);
- the source digest of the modules that define a trained model.

It is hashed with :func:`gdmkit.config.fingerprint`; the run lives in ``cache_dir/<hash>/`` next to
``key.json``, the key as JSON (tensor leaves by their fingerprint).
"""
from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import config, files
from ..checkpoint import CheckpointError, ckpt_file, read_checkpoint_meta, unwrap
from ..train import train
from .params import repo_root

__all__ = ["model_key", "key_hash", "cached_train", "is_cached", "history_frame", "MODEL_MODULES"]

# library modules whose source changes what a trained model is (their digest is part of every key)
MODEL_MODULES = ("bases", "groupings", "schedules", "paths", "nets", "norms", "conditioning", "train", "tensors")
CORRUPT_DIR = "corrupt"  # unreadable cache entries are moved to cache_dir/corrupt/<hash>.<n>


def _to_config(obj, what: str) -> dict:
    if not callable(getattr(obj, "to_config", None)):
        hint = ("build it with DiagonalPath.loss_fn(...), which returns a paths.Loss" if what == "loss"
                else "use a gdmkit network (nets.MLP, nets.UNet, nets.make_net, nets.unet_preset) or give "
                     "your class to_config()/from_config() with @gdmkit.config.register")
        raise ValueError(f"cached_train needs a {what} with to_config(), got {type(obj).__name__}: the cache "
                         f"keys on configs, so it cannot see what this {what} computes; {hint}, or pass "
                         "cache_dir=None to train without the cache")
    cfg = obj.to_config()
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"{type(obj).__name__}.to_config() returned {cfg!r:.80}, not a dict with a 'type' "
                         "entry; follow the config protocol of gdmkit.config")
    return cfg


def _module_sources(name: str) -> dict[str, str]:
    """{file: source} of a module, or of every .py file of a package."""
    mod = sys.modules.get(name) or importlib.import_module(name)
    folders = getattr(mod, "__path__", None)
    if folders:  # a package: every module in it
        return {f"{name}/{f.relative_to(folder)}": f.read_text()
                for folder in map(Path, folders) for f in sorted(folder.rglob("*.py"))}
    f = getattr(mod, "__file__", None)
    return {name: Path(f).read_text()} if f and f.endswith(".py") and os.path.isfile(f) else {}


def _source_digest(*objs) -> str:
    """Digest of the library's model modules and of the modules defining ``objs``' classes."""
    names = {f"gdmkit.{m}" for m in MODEL_MODULES} | {type(obj).__module__ for obj in objs}
    sources: dict[str, str] = {}
    for name in sorted(names):
        sources.update(_module_sources(name))
    return config.fingerprint(sources)


def trains_on_cpu(device=None) -> bool:
    """Whether :func:`gdmkit.train.train` with this ``device`` runs on the CPU (None: CPU without CUDA)."""
    return torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()


def default_progress(progress):
    """``progress`` as given, or for None the terminal behind a notebook kernel (``sys.__stderr__``)
    when the notebook runner set ``GDMKIT_PROGRESS=1``, else False."""
    if progress is None:
        return sys.__stderr__ if os.environ.get("GDMKIT_PROGRESS") == "1" else False
    return progress


def model_key(loss, net: nn.Module, data: Tensor, cfg, device=None) -> dict:
    """Everything that determines a trained model, as a config (tensor leaves kept).

    Training on the CPU (``device`` "cpu", or None without CUDA) adds ``cpu_threads``, torch's intra-op
    thread count: it sets the order of the floating-point reductions, so the same seed gives other bytes
    on another thread count, and a model trained on one must not stand in for the other.

    Parameters
    ----------
    loss : paths.Loss
        The objective, with ``to_config()`` (path, schedule sampler, time sampler).
    net : nn.Module
        The network in its initial state, with ``to_config()``.
    data : Tensor, shape (N, *event_shape)
    cfg : train.TrainConfig
    device : torch.device or str, optional
        Where it trains (as :func:`gdmkit.train.train` takes it).

    Raises
    ------
    ValueError
        When ``loss`` or ``net`` has no ``to_config``, or ``data`` is not a Tensor.
    """
    if not isinstance(data, Tensor):
        raise ValueError(f"cached_train caches runs on a data Tensor (N, *shape), got {type(data).__name__}; "
                         "stack the data into a tensor, or pass cache_dir=None to train without the cache")
    net = unwrap(net)
    key = {
        "loss": _to_config(loss, "loss"),
        "net": _to_config(net, "net"),
        "initial_weights": config.fingerprint(net.state_dict()),
        "data": config.fingerprint(data),
        "train_config": cfg.to_dict(),
        "source": _source_digest(loss, net),
    }
    if trains_on_cpu(device):
        key["cpu_threads"] = torch.get_num_threads()
    return key


def key_hash(key: dict) -> str:
    """The folder name of a run: the first 20 hex digits of the key's fingerprint."""
    return config.fingerprint(key)[:20]


def _key_json(key: dict) -> str:
    """The key as JSON, each tensor leaf replaced by {"$tensor": name, "fingerprint", "shape", "dtype"}."""
    plain, tensors = config.split_tensors(key, prefix="key")
    info = {name: {config.TENSOR_REF: name, "fingerprint": config.fingerprint(t),
                   "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in tensors.items()}

    def swap(v):
        if isinstance(v, dict):
            if set(v) == {config.TENSOR_REF}:
                return info[v[config.TENSOR_REF]]
            return {k: swap(x) for k, x in v.items()}
        return [swap(x) for x in v] if isinstance(v, list) else v

    return json.dumps(swap(plain), indent=1, sort_keys=True) + "\n"


def _run_dir(key: dict, cache_dir: str | os.PathLike) -> Path:
    root = Path(cache_dir)
    return (root if root.is_absolute() else repo_root() / root) / key_hash(key)


def is_cached(loss, net: nn.Module, data: Tensor, cfg, *,
              cache_dir: str | os.PathLike = "data/cache/models", device=None) -> bool:
    """Whether :func:`cached_train` with these arguments would load a finished run instead of training.

    Reads only the checkpoint's header (verified); an unreadable or unfinished checkpoint is False.
    The key is taken at torch's current CPU thread count, as :func:`cached_train` takes it.
    """
    run_dir = _run_dir(model_key(loss, net, data, cfg, device), cache_dir)
    try:
        return read_checkpoint_meta(ckpt_file(run_dir))["step"] >= cfg.steps
    except (CheckpointError, OSError, KeyError, TypeError):
        return False


def _write_key(run_dir: Path, text: str) -> None:
    key_file = run_dir / "key.json"
    try:
        same = key_file.read_text() == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        files.write_text(key_file, text)


def _move_aside(run_dir: Path) -> Path:
    """Move an unreadable cache entry to cache_dir/corrupt/<hash>.<n>; return where it went."""
    aside_root = run_dir.parent / CORRUPT_DIR
    aside_root.mkdir(parents=True, exist_ok=True)
    n = 0
    while (aside_root / f"{run_dir.name}.{n}").exists():
        n += 1
    dest = aside_root / f"{run_dir.name}.{n}"
    shutil.move(str(run_dir), str(dest))
    return dest


def cached_train(loss, net: nn.Module, data: Tensor, cfg, *,
                 cache_dir: str | os.PathLike | None = "data/cache/models", device=None,
                 progress=None):
    """:func:`gdmkit.train.train` behind a content-addressed cache of the finished run.

    The run lives in ``cache_dir/<key hash>/`` (a gdmkit checkpoint plus ``key.json``, see
    :func:`model_key`); when the checkpoint there has completed ``cfg.steps`` the weights are loaded
    instead of trained (train's resume), and an interrupted run resumes. A checkpoint the checkpoint
    module cannot read (:class:`gdmkit.checkpoint.CheckpointError`: corrupt or truncated) is moved to
    ``cache_dir/corrupt/`` with a warning naming it, and the model is trained again.

    Parameters
    ----------
    loss : paths.Loss
        ``DiagonalPath.loss_fn(...)``: callable ``loss(net, x, generator) -> (B,)`` with ``to_config()``.
    net : nn.Module
        A gdmkit network in its initial state (``to_config()``); trained in place on a cache miss.
    data : Tensor, shape (N, *event_shape)
    cfg : train.TrainConfig
    cache_dir : path or None
        Relative paths are taken from the repository root; None trains without the cache.
    device : torch.device or str, optional
        Passed to :func:`gdmkit.train.train`.
    progress : bool, text stream or None
        Train's progress bar. None (default): on the terminal behind the notebook kernel
        (``sys.__stderr__``) when the notebook runner set ``GDMKIT_PROGRESS=1``, else off — so a bar
        never lands in a notebook's outputs.

    Returns
    -------
    TrainResult
        ``.ema`` is the EMA network in eval mode (use it for sampling); ``.resumed_from == cfg.steps``
        when the result came from the cache.

    Raises
    ------
    ValueError
        When ``loss`` or ``net`` has no ``to_config()`` (the key could not see what they compute).
    """
    progress = default_progress(progress)
    key = model_key(loss, net, data, cfg, device)  # refuses objects without to_config, cached or not
    if cache_dir is None:
        result = train(loss, net, data, cfg, None, device=device, progress=progress)
        result.ema.eval()
        return result
    run_dir = _run_dir(key, cache_dir)
    text = _key_json(key)
    _write_key(run_dir, text)
    has_checkpoint = any(p.name != "key.json" for p in run_dir.iterdir())
    initial = copy.deepcopy(net.state_dict()) if has_checkpoint else None
    try:
        result = train(loss, net, data, cfg, run_dir, device=device, progress=progress)
    except CheckpointError as err:
        if initial is None:
            raise
        dest = _move_aside(run_dir)
        warnings.warn(f"the cached model in {run_dir} is unreadable ({err}); moved it to {dest} and "
                      "training again", stacklevel=2)
        net.load_state_dict(initial)  # in case the failed load had touched the weights
        _write_key(run_dir, text)
        result = train(loss, net, data, cfg, run_dir, device=device, progress=progress)
    result.ema.eval()
    return result


def history_frame(history: Iterable[tuple[int, float]], **labels):
    """A training history [(step, loss)] as a DataFrame with extra constant label columns."""
    import pandas as pd

    df = pd.DataFrame(list(history), columns=["step", "loss"])
    for k, v in labels.items():
        df[k] = v
    return df
