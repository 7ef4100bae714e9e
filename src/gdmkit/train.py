"""One training loop for every path and network.

The loop knows nothing about diffusion: it minimises the mean of ``loss_fn(net, x, generator)``
(per-example losses, shape (B,)) with AdamW, gradient clipping and an EMA copy of the network, and
writes checkpoints (:mod:`gdmkit.checkpoint`) that a later call resumes from without losing a completed
step. Schedule parameters drawn per batch (random orders, GUD softness a and b, ordering r) are the
loss function's business: it receives a generator seeded per step.

Reproducibility: the batch, the loss generator and the global RNG (dropout) of step ``s`` derive from
``(cfg.seed, s)`` only, so a resumed run sees what an uninterrupted run would (on CPU bit-identically).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import json
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoint import ckpt_file, resume_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "cpu_has_native_bf16", "lr_factor", "train"]

# fields that may change between an interrupted run and its resumption (they do not change the math)
_RESUME_FREE = frozenset({"steps", "ckpt_every", "log_every", "compile", "channels_last"})
_KINDS = {"int": (int, numbers.Integral), "float": (float, numbers.Real), "bool": (bool, bool),
          "str": (str, str), "float | None": (float, numbers.Real)}  # annotation: (type, what it accepts)
_STR_HINTS = {int: " (write a number, not a quoted string)", bool: " (write true or false, unquoted)",
              float: " (write a number, not a quoted string; PyYAML reads 2e-4 as a string: write 2.0e-4)"}
_POSITIVE = ("steps", "batch_size", "lr", "ckpt_every", "log_every", "max_loss", "grad_clip")  # (or None)
_NON_NEGATIVE = ("weight_decay", "warmup_steps", "seed")


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf, or the loss exceeded ``cfg.max_loss``."""


def _typed(name: str, value, annotation: str):
    """``value`` as the type of ``annotation`` ("int", "float", ...), or ValueError naming field and type."""
    kind, accepted = _KINDS[annotation]
    if isinstance(value, accepted) and (kind is bool or not isinstance(value, bool)):
        return kind(value)
    hint = _STR_HINTS.get(kind, "") if isinstance(value, str) else ""
    raise ValueError(f"TrainConfig.{name} must be {'an' if kind is int else 'a'} {kind.__name__}, got "
                     f"{type(value).__name__} {value!r}{hint}.")


@dataclasses.dataclass
class TrainConfig:
    """Resolved training configuration; written into every checkpoint.

    ``bf16`` applies on CUDA and on CPUs with native bfloat16 arithmetic (:func:`cpu_has_native_bf16`:
    AVX512-BF16 or AMX; benchmark ``train_step/bf16_vs_fp32_cpu``); ``compile`` and
    ``channels_last`` on CUDA only. Where a flag does not apply it is ignored with a warning.
    Fields of the wrong type (``steps="5000"``, ``lr="2e-4"`` from YAML) raise ValueError; ints may
    stand for floats."""

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
    bf16: bool = False  # bfloat16 autocast of the forward pass (CUDA, or a CPU with native bf16)
    compile: bool = False  # torch.compile the network (CUDA only)
    channels_last: bool = False  # channels_last memory format for 4-D data (CUDA only)
    max_loss: float = 1e6  # divergence guard: a larger (or non-finite) loss stops the run

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in _KINDS and not (value is None and f.type.endswith("None")):
                setattr(self, f.name, _typed(f.name, value, f.type))
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"TrainConfig.betas must be a pair of floats, got {self.betas!r}.")
        self.betas = (_typed("betas[0]", self.betas[0], "float"), _typed("betas[1]", self.betas[1], "float"))
        for name in _POSITIVE + _NON_NEGATIVE:
            pos = name in _POSITIVE
            if (v := getattr(self, name)) is not None and not (v > 0 if pos else v >= 0):
                raise ValueError(f"TrainConfig.{name} must be {'>' if pos else '>='} 0, got {v}.")
        if not (0.0 <= self.ema_decay <= 1.0 and all(0.0 <= b < 1.0 for b in self.betas)):
            raise ValueError(f"TrainConfig: need 0 <= ema_decay <= 1 and 0 <= betas < 1, got "
                             f"{self.ema_decay}, {self.betas}.")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"TrainConfig.lr_schedule {self.lr_schedule!r} is unknown; "
                             "use 'constant' or 'linear'.")

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields (betas as a list)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        """Inverse of :meth:`to_dict` (or a YAML mapping); unknown or missing fields raise ValueError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping):
            raise ValueError(f"TrainConfig.from_dict needs a mapping of fields, got {type(d).__name__}.")
        unknown = sorted(set(d) - set(fields))
        missing = [n for n, f in fields.items() if n not in d and f.default is dataclasses.MISSING]
        if unknown or missing:
            raise ValueError(f"TrainConfig.from_dict: unknown fields {unknown}, missing fields {missing}; "
                             f"the fields are {list(fields)}.")
        return cls(**d)


@dataclasses.dataclass
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
    """Learning-rate multiplier of step ``step`` in 1..cfg.steps: warm-up ``min(1, step / warmup_steps)``
    × (if "linear") ``1 - (step - 1) / steps`` (GDM App. B, "we linearly anneal the learning rate")."""
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
    """A 63-bit seed for (seed, step, stream, rank) by chained SplitMix64; streams: 0 the batch
    indices, 1 the loss generator, 2 the global RNG (dropout)."""
    x = 0
    for value in (seed, step, stream, rank):
        x = _splitmix64(x ^ (value & _MASK64))
    return x >> 1


def _check_values(x: Tensor, what: str, finite: bool = True) -> None:
    """ValueError for integer, bool or complex data, and (``finite``) for rows of x (N, ...) with NaN/inf."""
    if not x.is_floating_point():
        raise ValueError(f"{what} is a {x.dtype} tensor; train needs real floating-point data: convert it, "
                         "e.g. x.float() (rescaled as the path expects, e.g. x.float() / 127.5 - 1), or "
                         "dequantise 0..255 pixels with gdmkit.data.dequantize(x).")
    if not finite:
        return
    bad = torch.cat([~torch.isfinite(c.reshape(c.shape[0], -1)).all(1) for c in x.split(4096)])  # (N,)
    if bool(bad.any()):
        raise ValueError(f"{what} contains NaN or inf in {int(bad.sum())} of {x.shape[0]} rows (the first is "
                         f"row {int(bad.nonzero()[0, 0])}); remove or repair them, e.g. "
                         "x = x[torch.isfinite(x.flatten(1)).all(1)].")


def _cycle(data: Iterable, skip: int) -> Iterator[Tensor]:
    """Iterate ``data`` forever (restarting when exhausted), skipping the first ``skip`` batches."""
    seen = 0
    while True:
        start = seen
        for batch in data:
            seen += 1
            if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
                batch = batch[0]
            if not isinstance(batch, Tensor):
                raise ValueError(f"data yielded a {type(batch).__name__}; yield Tensors (B, *shape) "
                                 "or (Tensor, ...) tuples.")
            if seen > skip:
                _check_values(batch, "a batch of the data", finite=False)  # (finite: checked on divergence)
                yield batch
        if seen == start:
            raise ValueError("the data iterable yielded no batches; pass a non-empty Tensor or iterable.")


def _check_data(data, cfg: TrainConfig, world: int) -> None:
    if isinstance(data, Tensor):
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data Tensor of shape {tuple(data.shape)} has no examples; "
                             "pass (N, *shape) with N >= 1.")
        _check_values(data, "the training data")
    elif not isinstance(data, Iterable):
        raise ValueError(f"data must be a Tensor (N, *shape) or an iterable of batches, "
                         f"got {type(data).__name__}.")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the world size {world}; "
                         "batch_size is the global batch, pick a multiple of the number of processes.")


_Dist = collections.namedtuple("_Dist", "rank world local_rank owns_group", defaults=(0, 1, 0, False))


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX tiles), where ``TrainConfig.bf16``
    autocasts the forward pass on the CPU too; elsewhere bf16 is emulated and slower than float32."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(f()) for f in checks if callable(f))


class _Loop:
    """The state of one call of :func:`train` (kept out of the public API)."""

    def __init__(self, loss_fn, net, data, cfg, ckpt, device, d: _Dist):
        self.loss_fn, self.cfg, self.ckpt, self.device, self.d = loss_fn, cfg, ckpt, device, d
        self.cuda = device.type == "cuda"
        self.bf16 = cfg.bf16 and (self.cuda or (device.type == "cpu" and cpu_has_native_bf16()))
        self.net = net.to(device).train()
        if cfg.channels_last and self.cuda:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.net).requires_grad_(False).eval()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay, fused=True if self.cuda else None)
        ids = [device.index] if self.cuda else None
        self.model = (nn.parallel.DistributedDataParallel(self.net, device_ids=ids) if d.world > 1
                      else self.net)
        if cfg.compile and self.cuda:
            self.model = torch.compile(self.model)
        self.ema.load_state_dict(self.net.state_dict())  # after DDP's broadcast from rank 0
        self.history, self.window, self.step, self.saved, self.dirty = [], [0.0, 0], 0, 0, False
        # batches are cast to the dtype of the network's parameters (float64 data, float32 net: float32)
        self.dtype = next((p.dtype for p in self.net.parameters() if p.is_floating_point()), None)
        if ckpt is not None and ckpt.is_file():
            free = _RESUME_FREE - ({"steps"} if cfg.lr_schedule == "linear" else set())  # linear: the total
            meta = resume_checkpoint(ckpt, self.net, ema=self.ema, optimizer=self.opt, config=cfg.to_dict(),
                                     loss=loss_fn, free=free, world_size=d.world)
            self.history, self.step = meta["history"], meta["step"]
            self.window, self.saved = meta["extra"].get("window", [0.0, 0]), self.step
        self.start = self.step
        self.params = list(self.net.parameters())
        self.buffers, self.ema_params = list(self.net.buffers()), list(self.ema.parameters())
        self.ema_buffers = list(self.ema.buffers())
        self.batches = None if isinstance(data, Tensor) else _cycle(data, skip=self.step)
        self.data = data

    def batch(self, step: int) -> Tensor:
        """This rank's slice of the global batch of ``step`` (a Tensor's: ``batch_size`` rows drawn with
        replacement from (seed, step)), on the device, in the network's dtype."""
        if self.batches is None:
            g = torch.Generator().manual_seed(_step_seed(self.cfg.seed, step, 0))
            idx = torch.randint(self.data.shape[0], (self.cfg.batch_size,), generator=g)  # (batch_size,)
            x = self.data[idx.to(self.data.device)]
        else:
            x = next(self.batches)
        per = x.shape[0] // self.d.world
        if per == 0:
            raise ValueError(f"a batch of {x.shape[0]} cannot be split over {self.d.world} processes; "
                             "yield global batches of at least one example per process.")
        x = x[self.d.rank * per:(self.d.rank + 1) * per].to(self.device, self.dtype, non_blocking=True)
        if self.cfg.channels_last and self.cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, step: int) -> float:
        """Forward, backward, divergence check, AdamW step and EMA update; returns the global mean loss."""
        cfg, d = self.cfg, self.d
        x = self.batch(step)
        gen = torch.Generator(device=self.device).manual_seed(_step_seed(cfg.seed, step, 1, d.rank))
        torch.default_generator.manual_seed(seed := _step_seed(cfg.seed, step, 2, d.rank))  # dropout masks
        if self.cuda:  # (cheaper than torch.manual_seed)
            torch.cuda.manual_seed(seed)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, step)
        self.opt.zero_grad(set_to_none=True)
        with (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16
              else contextlib.nullcontext()):
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
        self._check_divergence(step, loss_val, gnorm_val, x)
        self.dirty = True  # from here until record() the state is neither step - 1 nor step
        self.opt.step()
        with torch.no_grad():  # ema <- d·ema + (1 - d)·θ, as ema + (1 - d)(θ - ema); buffers are copied
            torch._foreach_lerp_(self.ema_params, self.params, 1.0 - cfg.ema_decay)
            for e, b in zip(self.ema_buffers, self.buffers):
                e.copy_(b)
        self.record(step, loss_val)
        self.dirty = False
        return loss_val

    def _check_divergence(self, step: int, loss: float, gnorm: float, x: Tensor) -> None:
        if math.isfinite(loss) and math.isfinite(gnorm) and loss <= self.cfg.max_loss:
            return
        _check_values(x, f"the batch of step {step}")  # bad data, not a too-large lr
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
                        config=self.cfg, history=self.history, loss=self.loss_fn, extra=extra)
        self.saved = self.step


def train(loss_fn: Callable[[nn.Module, Tensor, torch.Generator], Tensor], net: nn.Module,
          data: Tensor | Iterable, cfg: TrainConfig, ckpt_dir: str | os.PathLike | None = None, *,
          device: torch.device | str | None = None, progress: bool | IO[str] = True,
          callback: Callable[[int, float, nn.Module, nn.Module], None] | None = None) -> TrainResult:
    """Train ``net`` to minimise ``loss_fn(net, x, generator).mean()``; resume from ``ckpt_dir``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(net, x, generator) -> Tensor, shape (B,)``: per-example losses; ``generator`` lives
        on the training device and is seeded from (cfg.seed, step, rank).
    net : nn.Module
        Trained in place (moved to ``device``). The net's and the loss's ``to_config()`` (when they
        have one) go into the checkpoint: :func:`gdmkit.checkpoint.load_trained` rebuilds the run.
    data : Tensor, shape (N, *shape), or iterable of batches
        A Tensor is sampled with replacement, the batch of step s drawn from (cfg.seed, s). An
        iterable yields global batches (Tensors or tuples whose first item is the data) and is
        restarted when exhausted; on resume the completed steps' batches are skipped, so resumption
        is exact only if the iterable repeats itself. Integer data and NaN/inf raise ValueError (a
        Tensor's before training, an iterable's when the loss is not finite). Batches are cast to the
        network's parameter dtype (float64 data trains a float32 network in float32).
    cfg : TrainConfig
    ckpt_dir : path, optional
        Checkpoints every ``cfg.ckpt_every`` steps, at the end and when the loop is interrupted
        between steps (KeyboardInterrupt, an exception from ``callback`` or ``loss_fn``). A checkpoint
        there is resumed from; its net and loss configs must match, and its config ``cfg`` except
        in ``steps`` (which may grow, unless lr_schedule is "linear"), ``ckpt_every``, ``log_every``,
        ``compile`` and ``channels_last``, else ValueError. A finished run is returned untrained.
    device : torch.device or str, optional
        Default: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
    progress : bool or text stream
        A tqdm bar (rank 0 only) on stderr, or on the stream given (e.g. a kernel's ``sys.__stderr__``).
    callback : callable, optional
        ``callback(step, loss, net, ema)`` after every completed step, on every rank.

    Returns
    -------
    TrainResult

    Notes
    -----
    Under torchrun (WORLD_SIZE > 1) the process group is initialised (NCCL on CUDA, else gloo), the
    network wrapped in DDP; every rank draws the same global batch and trains on its slice; rank 0
    alone writes checkpoints and shows progress. The global RNG is re-seeded every step (dropout)
    inside ``torch.random.fork_rng``: the caller's RNG state is left as it was.
    """
    d = _setup_distributed(device)
    try:
        _check_data(data, cfg, d.world)
        device = _resolve_device(device, d)
        asked = [name for name in ("compile", "channels_last") if getattr(cfg, name)]
        if asked and device.type != "cuda":
            warnings.warn(f"{', '.join(asked)} apply on CUDA only; ignored on {device}.")
        if cfg.bf16 and device.type != "cuda" and not (device.type == "cpu" and cpu_has_native_bf16()):
            warnings.warn(f"bf16 applies on CUDA and on CPUs with native bfloat16 (AVX512-BF16 or AMX); this "
                          f"{device} has none, where emulated bf16 would be slower than float32: trained in "
                          "float32 instead. Set bf16: false to silence this.")
        ckpt = ckpt_file(ckpt_dir) if ckpt_dir is not None else None
        loop = _Loop(loss_fn, net, data, cfg, ckpt, device, d)
        _run(loop, callback, progress)
        if d.world > 1:
            dist.barrier()  # the final checkpoint is on disk before any rank returns
        return TrainResult(loop.net, loop.ema, loop.history, loop.step, loop.start, ckpt)
    finally:
        if d.owns_group:
            dist.destroy_process_group()


def _run(loop: _Loop, callback, progress) -> None:
    cfg = loop.cfg
    devices = [loop.device.index] if loop.cuda else []
    file = None if isinstance(progress, bool) else progress
    bar = tqdm(total=cfg.steps, initial=loop.step, desc="train", file=file,
               disable=not progress or loop.d.rank != 0)
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
