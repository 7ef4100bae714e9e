"""One training loop for every path and network.

The loop knows nothing about diffusion: it minimises the mean of ``loss_fn(net, x, generator)``
(per-example losses, shape (B,)) with AdamW, gradient clipping and an EMA copy of the network,
and writes atomic, pickle-free checkpoints (safetensors + JSON) that a later call resumes from
without losing a completed step. Schedule parameters drawn per batch (random orders, GUD softness
a and b, ordering r) are the loss function's business: it receives a generator seeded per step.

Reproducibility: the batch, the loss generator and the global RNG (dropout) of step ``s`` are
derived from ``(cfg.seed, s)`` only, so a resumed run sees exactly what an uninterrupted run would,
and on CPU ends with bit-identical weights. The learning rate of step ``s`` is a function of ``s``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

__all__ = [
    "CKPT_NAME",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "load_checkpoint",
    "load_ema",
    "lr_factor",
    "read_checkpoint_meta",
    "save_checkpoint",
    "train",
]

CKPT_NAME = "checkpoint.safetensors"  # inside ckpt_dir; the JSON sidecar is checkpoint.json
_FORMAT = "gdmkit-checkpoint-1"
# fields that may change between an interrupted run and its resumption (they do not change the math)
_RESUME_FREE = frozenset({"steps", "ckpt_every", "log_every", "compile", "channels_last"})


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf, or the loss exceeded ``cfg.max_loss``."""


@dataclass
class TrainConfig:
    """Resolved training configuration; written next to every checkpoint.

    ``bf16``, ``compile`` and ``channels_last`` apply on CUDA only (ignored with a warning on CPU).
    """

    steps: int  # optimizer steps in total (a resumed run continues up to this)
    batch_size: int  # global batch (split evenly over DDP ranks)
    lr: float = 2e-4  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    ema_decay: float = 0.999  # EMA: ema <- d·ema + (1 - d)·θ after every step
    warmup_steps: int = 0  # linear warm-up of the learning rate from lr/warmup_steps to lr
    lr_schedule: str = "constant"  # "constant" or "linear" (anneal to 0 at `steps`, GDM App. B)
    ckpt_every: int = 1000  # checkpoint period in steps (and always at the end)
    log_every: int = 100  # history/progress period: mean loss over the last `log_every` steps
    seed: int = 0  # derives every batch, loss generator and dropout mask from (seed, step)
    bf16: bool = False  # bfloat16 autocast (CUDA only)
    compile: bool = False  # torch.compile the network (CUDA only)
    channels_last: bool = False  # channels_last memory format for 4-D data (CUDA only)
    max_loss: float = 1e6  # divergence guard: a larger (or non-finite) loss stops the run

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        positive = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                    "ckpt_every": self.ckpt_every, "log_every": self.log_every, "max_loss": self.max_loss}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {value}; pass a positive value.")
        for name, value in {"weight_decay": self.weight_decay, "warmup_steps": self.warmup_steps,
                            "seed": self.seed}.items():
            if value < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {value}.")
        if not (0.0 <= self.ema_decay <= 1.0 and all(0.0 <= b < 1.0 for b in self.betas)):
            raise ValueError(f"TrainConfig: need 0 <= ema_decay <= 1 and 0 <= betas < 1, got "
                             f"{self.ema_decay}, {self.betas}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}.")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"TrainConfig.lr_schedule {self.lr_schedule!r} is unknown; "
                             "use 'constant' or 'linear'.")

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields (betas as a list)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``net`` is the trained network (the object passed in, on the training device), ``ema`` its
    EMA copy, ``history`` a list of (step, mean loss over the steps since the previous entry),
    ``step`` the number of completed steps, ``resumed_from`` the step a checkpoint supplied
    (0 for a fresh run) and ``checkpoint`` the checkpoint file (None without ``ckpt_dir``).
    """

    net: nn.Module
    ema: nn.Module
    history: list[tuple[int, float]]
    step: int
    resumed_from: int
    checkpoint: Path | None


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning-rate multiplier of step ``step`` in 1..cfg.steps (warm-up × schedule).

    Warm-up: ``min(1, step / warmup_steps)``; "linear": ``1 - (step - 1) / steps`` (GDM App. B,
    "we linearly anneal the learning rate").
    """
    factor = min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "linear":
        factor *= max(0.0, 1.0 - (step - 1) / cfg.steps)
    return factor


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _step_seed(seed: int, step: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed for (seed, step, stream, rank) by chained SplitMix64.

    Streams: 0 the batch indices, 1 the loss generator, 2 the global RNG (dropout).
    """
    x = 0
    for value in (seed, step, stream, rank):
        x = _splitmix64(x ^ (value & _MASK64))
    return x >> 1


# ------------------------------------------------------------------------------------------ data


def _tensor_batch(data: Tensor, cfg: TrainConfig, step: int) -> Tensor:
    """The global batch of step ``step``: ``batch_size`` rows drawn with replacement from (seed, step)."""
    g = torch.Generator().manual_seed(_step_seed(cfg.seed, step, 0))
    idx = torch.randint(data.shape[0], (cfg.batch_size,), generator=g)  # (batch_size,)
    return data[idx.to(data.device)]


def _first_tensor(batch) -> Tensor:
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise ValueError(f"data yielded a {type(batch).__name__}; yield Tensors (B, *shape) "
                         "or (Tensor, ...) tuples.")
    return batch


def _cycle(data: Iterable, skip: int) -> Iterator[Tensor]:
    """Iterate ``data`` forever (restarting when exhausted), skipping the first ``skip`` batches."""
    seen = 0
    while True:
        empty = True
        for batch in data:
            empty = False
            seen += 1
            if seen > skip:
                yield _first_tensor(batch)
        if empty:
            raise ValueError("the data iterable yielded no batches; pass a non-empty Tensor or iterable.")


def _check_data(data, cfg: TrainConfig, world: int) -> None:
    if isinstance(data, Tensor):
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data Tensor of shape {tuple(data.shape)} has no examples; "
                             "pass (N, *shape) with N >= 1.")
    elif not isinstance(data, Iterable):
        raise ValueError(f"data must be a Tensor (N, *shape) or an iterable of batches, "
                         f"got {type(data).__name__}.")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the world size {world}; "
                         "batch_size is the global batch, pick a multiple of the number of processes.")


# ----------------------------------------------------------------------------------- checkpoints


def _ckpt_file(path: str | os.PathLike) -> Path:
    """A checkpoint file path: ``path`` itself if it ends in .safetensors, else ``path/CKPT_NAME``."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / CKPT_NAME


def _unwrap(net: nn.Module) -> nn.Module:
    """Strip torch.compile's and DDP's wrappers."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, nn.parallel.DistributedDataParallel):
            net = net.module
        else:
            return net


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through ``write(tmp)`` to a temporary file in ``path``'s folder, fsync, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (not possible on every OS)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


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
    config: TrainConfig | dict | None = None,
    history: Iterable[tuple[int, float]] = (),
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically: one safetensors file plus a human-readable JSON sidecar.

    The safetensors file holds every tensor (``net.*``, ``ema.*``, ``optim.<i>.<key>``,
    ``history.step``, ``history.loss``) and, in its header, the JSON metadata (format, step,
    resolved config, optimizer scalars and param_groups, ``extra``): it alone is loaded, so the
    pair can never disagree. The sidecar (same name, ``.json``) repeats the metadata and history.

    Parameters
    ----------
    path : path
        A ``.safetensors`` file, or a folder (then ``folder/checkpoint.safetensors``).

    Returns
    -------
    Path
        The safetensors file written.
    """
    path = _ckpt_file(path)
    tensors = _cpu_tensors("net.", _unwrap(net).state_dict())
    if ema is not None:
        tensors.update(_cpu_tensors("ema.", _unwrap(ema).state_dict()))
    optim_meta = None
    if optimizer is not None:
        optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
    history = [(int(s), float(v)) for s, v in history]
    tensors["history.step"] = torch.tensor([s for s, _ in history], dtype=torch.int64)
    tensors["history.loss"] = torch.tensor([v for _, v in history], dtype=torch.float64)
    config = config.to_dict() if isinstance(config, TrainConfig) else config
    meta = {"format": _FORMAT, "step": int(step), "config": config, "optimizer": optim_meta,
            "extra": extra or {}, "torch": torch.__version__}
    header = {"gdmkit": json.dumps(meta)}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    sidecar = json.dumps({**meta, "history": history}, indent=1).encode()
    _atomic(path.with_suffix(".json"), lambda tmp: Path(tmp).write_bytes(sidecar))
    return path


def _load_module(module: nn.Module, state: dict[str, Tensor], what: str, path: Path) -> None:
    try:
        missing, unexpected = _unwrap(module).load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatch
        raise ValueError(f"checkpoint {path} does not fit this network ({what}): {err}; load it into the "
                         "architecture it was trained with, or use a new ckpt_dir.") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit this network ({what}): missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}; load it into the architecture it was trained "
                         "with, or use a new ckpt_dir.")


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata in a checkpoint's safetensors header (step, config, optimizer, extra)."""
    path = _ckpt_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass the ckpt_dir of a run "
                                "or a .safetensors file.")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        header = f.metadata() or {}
    if "gdmkit" not in header:
        raise ValueError(f"{path} is not a gdmkit checkpoint (no 'gdmkit' metadata); "
                         "write it with save_checkpoint.")
    return json.loads(header["gdmkit"])


def load_checkpoint(
    path: str | os.PathLike,
    net: nn.Module | None = None,
    *,
    ema: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` without executing any pickle.

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
    path = _ckpt_file(path)
    meta = read_checkpoint_meta(path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    groups = {p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}
              for p in ("net.", "ema.", "optim.")}
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
    meta["history"] = list(zip(tensors["history.step"].tolist(), tensors["history.loss"].tolist()))
    return meta


def load_ema(ckpt_dir: str | os.PathLike, net: nn.Module) -> nn.Module:
    """Load the EMA weights of a checkpoint into ``net`` (for sampling); returns ``net`` in eval mode."""
    load_checkpoint(ckpt_dir, ema=net)
    return net.eval()


def _check_resume(meta: dict, cfg: TrainConfig, path: Path) -> None:
    """ValueError if the checkpoint's config differs from ``cfg`` in a field that changes the run."""
    saved, now = meta.get("config") or {}, cfg.to_dict()
    bad = [k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k]]
    if cfg.lr_schedule == "linear" and saved.get("steps") != now["steps"]:
        bad.append("steps")  # the linear schedule depends on the total
    if bad:
        diffs = ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now {now[k]!r})" for k in bad)
        raise ValueError(f"cannot resume from {path}: the config differs in {diffs}; use a new ckpt_dir, "
                         "or pass the checkpoint's config to resume.")
    if meta["step"] > cfg.steps:
        raise ValueError(f"checkpoint {path} is at step {meta['step']} but cfg.steps = {cfg.steps}; "
                         f"pass steps >= {meta['step']} or use a new ckpt_dir.")


# ------------------------------------------------------------------------------------ the loop


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False


def _setup_distributed(device: torch.device | str | None) -> _Dist:
    """Join ``torch.distributed`` if initialised, or initialise it when WORLD_SIZE > 1 (torchrun)."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), local)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Dist()
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local, owns_group=True)


def _resolve_device(device, d: _Dist) -> torch.device:
    if device is None:
        device = f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", d.local_rank if d.world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


@torch.no_grad()
def _update_ema(ema: tuple[list[Tensor], list[Tensor]], net: tuple[list[Tensor], list[Tensor]],
                decay: float) -> None:
    """ema <- decay·ema + (1 - decay)·θ, computed as ``ema + (1 - decay)(θ - ema)``.

    ``ema`` and ``net`` are (parameters, buffers) lists; buffers are copied.
    """
    torch._foreach_lerp_(ema[0], net[0], 1.0 - decay)
    for e, b in zip(ema[1], net[1]):
        e.copy_(b)


class _Loop:
    """The state of one call of :func:`train` (kept out of the public API)."""

    def __init__(self, loss_fn, net, data, cfg, ckpt, device, d: _Dist):
        self.loss_fn, self.cfg, self.ckpt, self.device, self.d = loss_fn, cfg, ckpt, device, d
        self.cuda = device.type == "cuda"
        self.net = net.to(device).train()
        if cfg.channels_last and self.cuda:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.net).requires_grad_(False).eval()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay, fused=True if self.cuda else None)
        self.model = self._wrap()
        self.ema.load_state_dict(self.net.state_dict())  # after DDP's broadcast from rank 0
        self.history, self.window, self.step, self.saved, self.dirty = [], [0.0, 0], 0, 0, False
        if ckpt is not None and ckpt.is_file():
            _check_resume(read_checkpoint_meta(ckpt), cfg, ckpt)
            meta = load_checkpoint(ckpt, self.net, ema=self.ema, optimizer=self.opt)
            self.history, self.step = meta["history"], meta["step"]
            self.window, self.saved = meta["extra"].get("window", [0.0, 0]), self.step
            if meta["extra"].get("world_size", d.world) != d.world:
                warnings.warn(f"resuming a run made with {meta['extra']['world_size']} processes on "
                              f"{d.world}: the loss generators differ per rank, so the run is no longer "
                              "bit-reproducible.")
        self.start = self.step
        self.params = list(self.net.parameters())
        self.net_tensors = (self.params, list(self.net.buffers()))
        self.ema_tensors = (list(self.ema.parameters()), list(self.ema.buffers()))
        self.batches = None if isinstance(data, Tensor) else _cycle(data, skip=self.step)
        self.data = data

    def _wrap(self) -> nn.Module:
        model = self.net
        if self.d.world > 1:
            ids = [self.device.index] if self.cuda else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile and self.cuda:
            model = torch.compile(model)
        return model

    def batch(self, step: int) -> Tensor:
        """This rank's slice of the global batch of ``step``, on the device."""
        x = _tensor_batch(self.data, self.cfg, step) if self.batches is None else next(self.batches)
        per = x.shape[0] // self.d.world
        if per == 0:
            raise ValueError(f"a batch of {x.shape[0]} cannot be split over {self.d.world} processes; "
                             "yield global batches of at least one example per process.")
        x = x[self.d.rank * per:(self.d.rank + 1) * per].to(self.device, non_blocking=True)
        if self.cfg.channels_last and self.cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, step: int) -> float:
        """Forward, backward, divergence check, AdamW step and EMA update; returns the global mean loss."""
        cfg, d = self.cfg, self.d
        x = self.batch(step)
        gen = torch.Generator(device=self.device).manual_seed(_step_seed(cfg.seed, step, 1, d.rank))
        self._seed_global_rng(_step_seed(cfg.seed, step, 2, d.rank))  # dropout masks
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, step)
        self.opt.zero_grad(set_to_none=True)
        bf16 = cfg.bf16 and self.cuda
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            losses = self.loss_fn(self.model, x, gen)
        if losses.dim() != 1 or losses.shape[0] != x.shape[0]:
            raise ValueError(f"loss_fn returned shape {tuple(losses.shape)}; return per-example losses of "
                             f"shape ({x.shape[0]},), unreduced.")
        loss = losses.float().mean()
        loss.backward()
        gnorm = (torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
                 if cfg.grad_clip is not None else torch.zeros((), device=self.device))
        report = torch.stack([loss.detach(), gnorm.float()])  # (2,)
        if d.world > 1:  # every rank must take the same divergence decision
            dist.all_reduce(report)
            report /= d.world
        loss_val, gnorm_val = report.tolist()
        self._check_divergence(step, loss_val, gnorm_val)
        self.dirty = True  # from here until record() the state is neither step - 1 nor step
        self.opt.step()
        _update_ema(self.ema_tensors, self.net_tensors, cfg.ema_decay)
        self.record(step, loss_val)
        self.dirty = False
        return loss_val

    def _seed_global_rng(self, seed: int) -> None:
        """Seed the default generator of the CPU and of the training GPU (cheaper than torch.manual_seed)."""
        torch.default_generator.manual_seed(seed)
        if self.cuda:
            torch.cuda.manual_seed(seed)

    def _check_divergence(self, step: int, loss: float, gnorm: float) -> None:
        if math.isfinite(loss) and math.isfinite(gnorm) and loss <= self.cfg.max_loss:
            return
        raise TrainingDiverged(
            f"training diverged at step {step}: loss {loss:.4g}, gradient norm {gnorm:.4g} "
            f"(max_loss {self.cfg.max_loss:g}); lower lr (now {self.cfg.lr:g}), enable or lower grad_clip "
            f"(now {self.cfg.grad_clip}), or add warmup_steps."
        )

    def record(self, step: int, loss: float) -> None:
        self.step = step
        self.window = [self.window[0] + loss, self.window[1] + 1]
        if step % self.cfg.log_every == 0 or step == self.cfg.steps:
            self.history.append((step, self.window[0] / self.window[1]))
            self.window = [0.0, 0]

    def save(self) -> None:
        """Checkpoint the completed steps (rank 0 only)."""
        if self.ckpt is None or self.d.rank != 0 or self.saved == self.step:
            return
        extra = {"window": self.window, "world_size": self.d.world, "net_class": type(self.net).__name__}
        save_checkpoint(self.ckpt, self.net, ema=self.ema, optimizer=self.opt, step=self.step,
                        config=self.cfg, history=self.history, extra=extra)
        self.saved = self.step


def _warn_cuda_only(cfg: TrainConfig, device: torch.device) -> None:
    asked = [name for name in ("bf16", "compile", "channels_last") if getattr(cfg, name)]
    if asked and device.type != "cuda":
        warnings.warn(f"{', '.join(asked)} apply on CUDA only; ignored on {device}.")


def train(
    loss_fn: Callable[[nn.Module, Tensor, torch.Generator], Tensor],
    net: nn.Module,
    data: Tensor | Iterable,
    cfg: TrainConfig,
    ckpt_dir: str | os.PathLike | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: Callable[[int, float, nn.Module, nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``net`` to minimise ``loss_fn(net, x, generator).mean()``; resume from ``ckpt_dir``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(net, x, generator) -> Tensor, shape (B,)``: per-example losses; ``generator`` lives
        on the training device and is seeded from (cfg.seed, step, rank).
    net : nn.Module
        Trained in place (moved to ``device``).
    data : Tensor, shape (N, *shape), or iterable of batches
        A Tensor is sampled with replacement, the batch of step s drawn from (cfg.seed, s). An
        iterable yields global batches (Tensors or tuples whose first item is the data) and is
        restarted when exhausted; on resume the completed steps' batches are skipped, so resumption
        is exact only if the iterable repeats itself.
    cfg : TrainConfig
    ckpt_dir : path, optional
        Checkpoints every ``cfg.ckpt_every`` steps, at the end and when the loop is interrupted
        between steps (KeyboardInterrupt, an exception from ``callback`` or ``loss_fn``). An existing
        checkpoint there is resumed from; its config must match ``cfg`` except in ``steps`` (which
        may grow, unless lr_schedule is "linear"), ``ckpt_every``, ``log_every``, ``compile`` and
        ``channels_last``, else ValueError. A finished run is returned without training.
    device : torch.device or str, optional
        Default: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
    progress : bool
        Show a tqdm bar (rank 0 only).
    callback : callable, optional
        ``callback(step, loss, net, ema)`` after every completed step, on every rank.

    Returns
    -------
    TrainResult

    Notes
    -----
    Under torchrun (WORLD_SIZE > 1) the process group is initialised (NCCL on CUDA, else gloo), the
    network is wrapped in DDP, every rank draws the same global batch and trains on its
    ``batch_size // world`` slice; only rank 0 writes checkpoints and shows progress. The global
    torch RNG is re-seeded every step (for dropout) inside ``torch.random.fork_rng``, so the
    caller's RNG state is left as it was.
    """
    d = _setup_distributed(device)
    try:
        _check_data(data, cfg, d.world)
        device = _resolve_device(device, d)
        _warn_cuda_only(cfg, device)
        ckpt = _ckpt_file(ckpt_dir) if ckpt_dir is not None else None
        loop = _Loop(loss_fn, net, data, cfg, ckpt, device, d)
        _run(loop, callback, progress)
        if d.world > 1:
            dist.barrier()  # the final checkpoint is on disk before any rank returns
        return TrainResult(loop.net, loop.ema, loop.history, loop.step, loop.start, ckpt)
    finally:
        if d.owns_group:
            dist.destroy_process_group()


def _run(loop: _Loop, callback, progress: bool) -> None:
    cfg = loop.cfg
    devices = [loop.device.index] if loop.cuda else []
    bar = tqdm(total=cfg.steps, initial=loop.step, disable=not progress or loop.d.rank != 0, desc="train")
    try:
        with torch.random.fork_rng(devices=devices):
            for step in range(loop.step + 1, cfg.steps + 1):
                loss = loop.train_step(step)
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{loop.history[-1][1]:.4g}")
                if step % cfg.ckpt_every == 0 or step == cfg.steps:
                    loop.save()
                if callback is not None:
                    callback(step, loss, loop.net, loop.ema)
    except BaseException:
        # Interrupted between steps, or inside a step before opt.step() changed anything: the state
        # is that of the last completed step, so save it (no completed step is lost).
        if not loop.dirty:
            try:
                loop.save()
            except Exception as err:  # keep the original exception
                warnings.warn(f"could not write the checkpoint after the interruption: {err}")
        raise
    finally:
        bar.close()
