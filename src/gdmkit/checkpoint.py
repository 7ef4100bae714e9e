"""Self-describing, checksummed, pickle-free checkpoints (one safetensors file plus a JSON sidecar).

A checkpoint file holds every tensor of a training run in its tensor table (``net.*``, ``ema.*``,
``optim.<i>.<key>``, ``history.step``/``history.loss`` and the tensor leaves of the configs,
``config.net.*`` and ``config.loss.*``) and, in its header, two JSON strings:

- ``"gdmkit"``: the metadata: format, step, the :class:`gdmkit.train.TrainConfig`, the network's
  ``to_config()`` and the loss's ``to_config()`` (tensor leaves as ``{"$tensor": name}``, see
  :func:`gdmkit.config.split_tensors`) with their fingerprints, optimizer scalars, ``extra``;
- ``"gdmkit.sha256"``: the sha256 of that metadata string and of every tensor (dtype, shape, bytes).

So :func:`load_trained` rebuilds network, EMA, loss and path from the file alone; every load verifies
the checksums (a truncated, corrupted or foreign file raises :class:`CheckpointError` naming the file
and what to do). Writes go through :func:`gdmkit.files.atomic_write`."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from . import config as gconfig
from .files import atomic_write, write_text

__all__ = ["CKPT_NAME", "CheckpointError", "Trained", "ckpt_file", "config_of", "load_checkpoint", "load_ema",
           "load_trained", "read_checkpoint_meta", "resume_checkpoint", "save_checkpoint", "unwrap"]

CKPT_NAME = "checkpoint.safetensors"  # inside a ckpt_dir; the JSON sidecar is checkpoint.json
FORMAT = "gdmkit-checkpoint-2"
_UNCHECKED_FORMATS = ("gdmkit-checkpoint-1",)  # written before checksums: loaded with a warning
_META, _SUMS = "gdmkit", "gdmkit.sha256"  # the header's metadata keys
_REDO = "delete it and retrain (or restore it from a copy)"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted: truncated, corrupted, foreign or incomplete."""


def ckpt_file(path: str | os.PathLike) -> Path:
    """A checkpoint file path: ``path`` itself if it ends in .safetensors, else ``path/CKPT_NAME``."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / CKPT_NAME


def unwrap(net: nn.Module) -> nn.Module:
    """Strip torch.compile's and DDP's wrappers."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, nn.parallel.DistributedDataParallel):
            net = net.module
        else:
            return net


def config_of(obj: Any) -> dict | None:
    """``obj.to_config()`` when ``obj`` has one (networks, losses), else None (with a warning if it fails)."""
    to_config = getattr(unwrap(obj) if isinstance(obj, nn.Module) else obj, "to_config", None)
    try:
        return to_config() if callable(to_config) else None
    except (ValueError, TypeError, NotImplementedError) as err:  # e.g. a Loss with a plain-function sampler
        warnings.warn(f"{type(obj).__name__}.to_config() failed ({err}); the checkpoint will not describe "
                      "it, so load_trained cannot rebuild it.")
        return None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(t: Tensor) -> str:
    """sha256 of a CPU tensor's dtype, shape and bytes."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _cpu_tensors(prefix: str, state: dict) -> dict[str, Tensor]:
    """Fresh contiguous CPU copies (safetensors rejects shared or strided storage)."""
    return {prefix + k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, Tensor], dict]:
    """Optimizer state -> (tensors named ``optim.<param>.<key>``, JSON-ready scalars and param_groups)."""
    tensors, scalars = {}, {}
    for idx, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state_scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta["state_scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | os.PathLike,
    net: nn.Module,
    *,
    ema: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    config: Any = None,
    history: Iterable[tuple[int, float]] = (),
    loss: Any = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically: one safetensors file plus a human-readable JSON sidecar.

    Parameters
    ----------
    path : path
        A ``.safetensors`` file, or a folder (then ``folder/checkpoint.safetensors``).
    net, ema : nn.Module
        The raw and EMA networks; ``net.to_config()``, when the network has one, is stored too.
    optimizer : torch.optim.Optimizer, optional
    step : int
        Completed optimizer steps.
    config : TrainConfig or dict, optional
        The training configuration (a TrainConfig is stored through ``to_dict()``).
    history : iterable of (step, loss)
    loss : object, optional
        The training objective; ``loss.to_config()`` is stored when it has one (a ``paths.Loss``).
    extra : dict, optional
        JSON-ready values the caller wants back.

    Returns
    -------
    Path
        The safetensors file written (the sidecar, same name with ``.json``, repeats the metadata).
    """
    path = ckpt_file(path)
    tensors = _cpu_tensors("net.", unwrap(net).state_dict())
    if ema is not None:
        tensors.update(_cpu_tensors("ema.", unwrap(ema).state_dict()))
    optim_meta = None
    if optimizer is not None:
        optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
    history = [(int(s), float(v)) for s, v in history]
    tensors["history.step"] = torch.tensor([s for s, _ in history], dtype=torch.int64)
    tensors["history.loss"] = torch.tensor([v for _, v in history], dtype=torch.float64)
    meta: dict[str, Any] = {"format": FORMAT, "step": int(step)}
    meta["config"] = config.to_dict() if hasattr(config, "to_dict") else config
    for what, obj in (("net", net), ("loss", loss)):
        cfg = config_of(obj)
        json_cfg, cfg_tensors = gconfig.split_tensors(cfg, prefix=f"config.{what}")
        tensors.update(cfg_tensors)
        meta[f"{what}_config"] = json_cfg
        meta[f"{what}_fingerprint"] = None if cfg is None else gconfig.fingerprint(cfg)
    meta.update(optimizer=optim_meta, extra=extra or {}, torch=torch.__version__)
    meta_json = json.dumps(meta)
    sums = {"meta": _sha256(meta_json),
            "tensors": {k: _digest(v) for k, v in tensors.items()}}
    header = {_META: meta_json, _SUMS: json.dumps(sums)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    write_text(path.with_suffix(".json"), json.dumps({**meta, "history": history}, indent=1))
    return path


def _not_safetensors(path: Path, head: bytes) -> CheckpointError:
    if head.startswith(b"PK\x03\x04"):
        what = "a zip archive, the format torch.save writes (a pickle inside)"
    elif head[:1] == b"\x80":
        what = "a Python pickle"
    else:
        what = "not a safetensors file"
    return CheckpointError(
        f"{path} is not a safetensors checkpoint: it is {what}. gdmkit never unpickles files (a pickle "
        "can run arbitrary code); point to the checkpoint.safetensors that gdmkit.train wrote, or re-save "
        "weights you trust with safetensors.torch.save_file.")


def _read_header(path: Path) -> tuple[dict, dict | None, set[str]]:
    """(metadata, checksums or None, tensor names) from the header; CheckpointError if unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass a run's ckpt_dir or a .safetensors file.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)  # u64 header length, then the JSON's "{" (a length 128 + 256m starts like a pickle)
        n = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
        if len(head) == 9 and (head[8:9] != b"{" or n > 100_000_000):
            raise _not_safetensors(path, head)
        f.seek(8)
        raw = f.read(n) if n >= 0 else b""
    if n < 0 or len(raw) < n:
        raise CheckpointError(f"checkpoint {path} is truncated ({size} bytes, shorter than its own header "
                              f"says): the write or copy was cut short; {_REDO}.")
    try:
        header = json.loads(raw)
        tables = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((int(v["data_offsets"][1]) for v in tables.values()), default=0)
        metadata = header.get("__metadata__") or {}
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        raise CheckpointError(f"checkpoint {path} has a corrupted header (not the JSON safetensors "
                              f"writes); {_REDO}.") from None
    if 8 + n + end > size:
        raise CheckpointError(f"checkpoint {path} is truncated: its tensors need {8 + n + end} bytes, the "
                              f"file has {size}; the write or copy was cut short; {_REDO}.")
    if _META not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a gdmkit checkpoint (no 'gdmkit' "
                              "metadata); point to the checkpoint.safetensors of a gdmkit run, or read "
                              "plain weights with safetensors.torch.load_file.")
    try:
        meta = json.loads(metadata[_META])
        sums = json.loads(metadata[_SUMS]) if _SUMS in metadata else None
    except ValueError:
        raise CheckpointError(f"checkpoint {path} has corrupted metadata; {_REDO}.") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt in _UNCHECKED_FORMATS:
        warnings.warn(f"checkpoint {path} ({fmt}) has no checksums: its integrity cannot be verified; "
                      "retrain to get a checksummed checkpoint.")
    elif fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {fmt!r}, this gdmkit reads {FORMAT!r}; load it "
                              "with the gdmkit version that wrote it, or retrain.")
    elif not isinstance(sums, dict) or sums.get("meta") != _sha256(metadata[_META]):
        raise CheckpointError(f"checkpoint {path} is corrupted: its metadata does not match its sha256 "
                              f"checksum; {_REDO}.")
    return meta, sums, set(tables)


def _read_tensors(path: Path, sums: dict | None, names: set[str]) -> dict[str, Tensor]:
    """Every tensor of the file, each checked against its sha256; CheckpointError on any mismatch."""
    if sums is not None:
        listed = set(sums.get("tensors", {}))
        if listed != names:
            raise CheckpointError(f"checkpoint {path} is incomplete or altered: tensors missing "
                                  f"{sorted(listed - names)[:5]}, tensors without a checksum "
                                  f"{sorted(names - listed)[:5]}; {_REDO}.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err}); {_REDO}.") from None
    if sums is not None:
        bad = sorted(k for k, t in tensors.items() if _digest(t) != sums["tensors"][k])
        if bad:
            raise CheckpointError(f"checkpoint {path} is corrupted: the bytes of tensor(s) {bad[:5]} "
                                  f"({len(bad)} in all) do not match their sha256 checksums; {_REDO}.")
    return tensors


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata in a checkpoint's header (step, config, net_config, loss_config, extra, ...).

    Only the header is read (and its checksum verified); raises :class:`CheckpointError` for a file
    that is not a readable gdmkit checkpoint.
    """
    return _read_header(ckpt_file(path))[0]


def _load_module(module: nn.Module, state: dict[str, Tensor], what: str, path: Path) -> None:
    try:
        missing, unexpected = unwrap(module).load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatch
        raise ValueError(f"checkpoint {path} does not fit this network ({what}): {err}; load it into the "
                         "architecture it was trained with, or use a new ckpt_dir.") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit this network ({what}): missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}; load it into the architecture it was trained "
                         "with, or use a new ckpt_dir.")


def _groups(tensors: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    return {p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}
            for p in ("net.", "ema.", "optim.")}


def _load(path: Path) -> tuple[dict, dict[str, Tensor]]:
    meta, sums, names = _read_header(path)
    tensors = _read_tensors(path, sums, names)
    meta["history"] = list(zip(tensors["history.step"].tolist(), tensors["history.loss"].tolist()))
    return meta, tensors


def load_checkpoint(
    path: str | os.PathLike,
    net: nn.Module | None = None,
    *,
    ema: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into existing objects, without any pickle.

    Parameters
    ----------
    path : path
        A ``.safetensors`` file or a folder holding ``checkpoint.safetensors``.
    net, ema : nn.Module, optional
        Receive the raw and the EMA weights (in place).
    optimizer : torch.optim.Optimizer, optional
        Receives the optimizer state.

    Returns
    -------
    dict
        The metadata: ``step``, ``config``, ``history`` (list of (step, loss)), ``extra``, ...
    """
    path = ckpt_file(path)
    meta, tensors = _load(path)
    groups = _groups(tensors)
    if net is not None:
        _load_module(net, groups["net."], "net", path)
    if ema is not None:
        if not groups["ema."]:
            raise ValueError(f"checkpoint {path} holds no EMA weights; pass ema=None.")
        _load_module(ema, groups["ema."], "ema", path)
    if optimizer is not None:
        if meta["optimizer"] is None:
            raise ValueError(f"checkpoint {path} holds no optimizer state; pass optimizer=None.")
        flat = {"optim." + k: v for k, v in groups["optim."].items()}
        optimizer.load_state_dict(_unflatten_optimizer(flat, meta["optimizer"]))
    return meta


def resume_checkpoint(path: str | os.PathLike, net: nn.Module, *, ema: nn.Module, optimizer, config: dict,
                      loss: Any = None, free: Iterable[str] = (), world_size: int = 1) -> dict:
    """Check that a checkpoint belongs to this run, then load it (:func:`load_checkpoint`'s metadata).

    ValueError (naming the differences) if the stored training config differs from ``config`` in a
    field not in ``free``, if the stored network or loss config differs from ``net``'s or ``loss``'s
    (compared by fingerprint when both exist), or if the checkpoint is past ``config["steps"]``.
    """
    path = ckpt_file(path)
    meta = read_checkpoint_meta(path)
    saved, free = meta.get("config") or {}, set(free)
    bad = [k for k in config if k not in free and saved.get(k) != config[k]]
    if bad:
        diffs = ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now {config[k]!r})" for k in bad)
        raise ValueError(f"cannot resume from {path}: the config differs in {diffs}; use a new ckpt_dir, "
                         "or pass the checkpoint's config to resume.")
    for what, obj in (("net", net), ("loss", loss)):
        old, cfg = meta.get(f"{what}_fingerprint"), config_of(obj)
        if old is not None and cfg is not None and old != gconfig.fingerprint(cfg):
            raise ValueError(f"cannot resume from {path}: this run's {what} config differs from the "
                             f"checkpoint's (meta['{what}_config']); use a new ckpt_dir, or rebuild the "
                             f"{what} it was trained with (gdmkit.checkpoint.load_trained).")
    if meta["step"] > config["steps"]:
        raise ValueError(f"checkpoint {path} is at step {meta['step']} but cfg.steps = {config['steps']}; "
                         f"pass steps >= {meta['step']} or use a new ckpt_dir.")
    meta = load_checkpoint(path, net, ema=ema, optimizer=optimizer)
    if meta["extra"].get("world_size", world_size) != world_size:
        warnings.warn(f"resuming a run made with {meta['extra']['world_size']} processes on {world_size}: "
                      "the loss generators differ per rank, so the run is no longer bit-reproducible.")
    return meta


def load_ema(ckpt_dir: str | os.PathLike, net: nn.Module) -> nn.Module:
    """Load the EMA weights of a checkpoint into ``net`` (for sampling); returns ``net`` in eval mode."""
    load_checkpoint(ckpt_dir, ema=net)
    return net.eval()


@dataclass
class Trained:
    """A training run rebuilt from its checkpoint by :func:`load_trained`.

    ``net`` holds the raw weights, ``ema`` the EMA weights (eval mode, no gradients; use it for
    sampling); ``loss`` is the training objective rebuilt from its config and ``path`` its
    ``.path`` (a ``paths.DiagonalPath``), both None when the checkpoint holds no loss config;
    ``train_config`` the :class:`gdmkit.train.TrainConfig`, ``history`` [(step, loss)], ``meta``
    the header metadata.
    """

    net: nn.Module
    ema: nn.Module
    loss: Any
    path: Any
    train_config: Any
    step: int
    history: list[tuple[int, float]]
    meta: dict


def _rebuild(cfg: Any, tensors: dict[str, Tensor], what: str, path: Path) -> Any:
    try:
        cfg = gconfig.join_tensors(cfg, tensors)
    except ValueError as err:  # a reference to a tensor the file does not hold
        raise CheckpointError(f"checkpoint {path}: {err}") from None
    try:
        return gconfig.from_config(cfg)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild its {what} from the stored config: {err}. "
                              "Load it with the gdmkit version that wrote it, or retrain.") from None


def load_trained(file_or_dir: str | os.PathLike, device: torch.device | str = "cpu") -> Trained:
    """Rebuild network, EMA network, loss, path and training config from a checkpoint file alone.

    Parameters
    ----------
    file_or_dir : path
        A ``.safetensors`` checkpoint or a ckpt_dir holding ``checkpoint.safetensors``.
    device : torch.device or str
        Where the networks go (the loss and path stay on the CPU: they follow the data's device per
        call; ``path.to(device)`` moves them once).

    Returns
    -------
    Trained

    Raises
    ------
    CheckpointError
        The file is not a readable, intact gdmkit checkpoint, or holds no network config (the network
        had no ``to_config()``: then build it yourself and use :func:`load_checkpoint`).
    """
    from .train import TrainConfig

    path = ckpt_file(file_or_dir)
    meta, tensors = _load(path)
    if meta.get("net_config") is None:
        raise CheckpointError(f"checkpoint {path} holds no network config (the network had no to_config()); "
                              "build the network yourself and call load_checkpoint(path, net, ema=...).")
    groups = _groups(tensors)
    if not groups["ema."]:
        raise CheckpointError(f"checkpoint {path} holds no EMA weights; {_REDO}, or use load_checkpoint.")
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the caller's RNG
        net, ema = (_rebuild(meta["net_config"], tensors, "network", path) for _ in range(2))
    _load_module(net, groups["net."], "net", path)
    _load_module(ema, groups["ema."], "ema", path)
    loss = None if meta.get("loss_config") is None else _rebuild(meta["loss_config"], tensors, "loss", path)
    try:
        train_config = None if meta.get("config") is None else TrainConfig.from_dict(meta["config"])
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid training config: {err}") from None
    return Trained(net=net.to(device), ema=ema.to(device).requires_grad_(False).eval(), loss=loss,
                   path=getattr(loss, "path", None), train_config=train_config, step=int(meta["step"]),
                   history=meta["history"], meta=meta)
