"""Tests for gdmkit.train: optimisation, EMA, atomic pickle-free checkpoints, exact resume, DDP."""

from __future__ import annotations

import json
import os
import pickle
import runpy
import shutil
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import gdmkit
import gdmkit.checkpoint as gckpt
from gdmkit.checkpoint import load_checkpoint, load_ema, read_checkpoint_meta, save_checkpoint
from gdmkit.nets import MLP
from gdmkit.train import TrainConfig, TrainingDiverged, lr_factor, train

DATA = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))


def make_net(seed: int, dropout: float = 0.0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return DropMLP(dropout)


class DropMLP(nn.Module):
    """A tiny MLP with dropout on its input (so resumption must reproduce the dropout masks)."""

    def __init__(self, dropout: float):
        super().__init__()
        self.drop, self.mlp = nn.Dropout(dropout), MLP(4, hidden=16, depth=2, emb_dim=8)

    def forward(self, x_t, state, summary):
        return self.mlp(self.drop(x_t), state, summary)


def identity_loss(net, x, generator):
    """((net(x, 0, t) - x)^2) per example, t drawn from the step's generator."""
    t = torch.rand(x.shape[0], generator=generator, device=x.device)
    return ((net(x, x * 0, t) - x) ** 2).mean(1)


def flow_loss(net, x, generator):
    """A rectified-flow toy (GDM eq. 8 with a scalar schedule): every random draw uses ``generator``."""
    z = torch.randn(x.shape, generator=generator, device=x.device)
    t = torch.rand(x.shape[0], 1, generator=generator, device=x.device)
    x_t = (1 - t) * x + t * z
    return ((net(x_t, t.expand_as(x), t[:, 0]) - (x - z)) ** 2).mean(1)


def params(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_config_validation_and_lr_factor():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0, batch_size=4)
    with pytest.raises(ValueError, match="'constant' or 'linear'"):
        TrainConfig(steps=1, batch_size=4, lr_schedule="cosine")
    cfg = TrainConfig(steps=10, batch_size=4, warmup_steps=4, lr_schedule="linear")
    assert lr_factor(cfg, 1) == pytest.approx(1 / 4 * 1.0)
    assert lr_factor(cfg, 4) == pytest.approx(1.0 * (1 - 3 / 10))
    assert lr_factor(cfg, 10) == pytest.approx(1 - 9 / 10)
    assert lr_factor(TrainConfig(steps=10, batch_size=4), 7) == 1.0


def test_loss_decreases():
    cfg = TrainConfig(steps=60, batch_size=16, lr=1e-2, log_every=20)
    res = train(identity_loss, make_net(0), DATA, cfg, progress=False)
    assert [s for s, _ in res.history] == [20, 40, 60]
    assert res.history[-1][1] < 0.3 * res.history[0][1]
    assert res.step == 60 and res.resumed_from == 0 and res.checkpoint is None


def test_ema_matches_formula_after_two_steps():
    d = 0.9
    net = make_net(0)
    p = [params(net)]  # θ_0
    cfg = TrainConfig(steps=2, batch_size=8, lr=1e-2, ema_decay=d)
    res = train(identity_loss, net, DATA, cfg, progress=False, callback=lambda s, loss, n, e: p.append(params(n)))
    ema = params(res.ema)
    for k in ema:
        # ema_1 = d θ_0 + (1 - d) θ_1;  ema_2 = d ema_1 + (1 - d) θ_2
        expected = d * (d * p[0][k] + (1 - d) * p[1][k]) + (1 - d) * p[2][k]
        assert torch.allclose(ema[k], expected, atol=1e-6, rtol=1e-6), k
    assert not torch.allclose(ema["mlp.out.weight"], p[2]["mlp.out.weight"])


def test_checkpoint_atomic_safetensors_and_pickle_free(tmp_path, monkeypatch):
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, ckpt_every=2, log_every=1)
    res = train(identity_loss, make_net(0), DATA, cfg, tmp_path, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.safetensors"]
    with safe_open(str(tmp_path / "checkpoint.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {"net.mlp.out.weight", "ema.mlp.out.weight", "optim.0.exp_avg", "history.loss"} <= keys
    sidecar = json.loads((tmp_path / "checkpoint.json").read_text())
    assert sidecar["step"] == 3 and sidecar["config"]["batch_size"] == 8 and len(sidecar["history"]) == 3

    def no_pickle(*args, **kwargs):
        raise AssertionError("a checkpoint load executed a pickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, no_pickle)
    fresh = make_net(7)
    meta = load_checkpoint(tmp_path, fresh)
    assert meta["step"] == 3 and meta["history"] == res.history
    assert_bit_identical(params(fresh), params(res.net))
    assert_bit_identical(params(load_ema(tmp_path, make_net(8))), params(res.ema))

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(gckpt, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, fresh, step=99)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.safetensors"]  # no temp file
    assert read_checkpoint_meta(tmp_path)["step"] == 3  # the previous checkpoint is intact


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("kind", ["tensor", "iterable"])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, kind):
    data = DATA if kind == "tensor" else [DATA[i : i + 8] for i in range(0, 32, 8)]
    cfg = TrainConfig(steps=6, batch_size=8, lr=1e-2, ema_decay=0.9, ckpt_every=2, log_every=1)
    full = train(flow_loss, make_net(0, dropout=0.2), data, cfg, progress=False)

    killed, interrupted = tmp_path / "killed", tmp_path / "interrupted"

    def stop_at_3(step, loss, net, ema):
        if step == 2:  # a hard kill after step 2 leaves only the periodic checkpoint
            shutil.copytree(interrupted, killed)
        if step == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(flow_loss, make_net(0, dropout=0.2), data, cfg, interrupted, progress=False, callback=stop_at_3)
    assert read_checkpoint_meta(interrupted)["step"] == 3  # saved on the way out: no completed step lost
    assert read_checkpoint_meta(killed)["step"] == 2
    for ckpt_dir, start in ((interrupted, 3), (killed, 2)):
        res = train(flow_loss, make_net(123, dropout=0.2), data, cfg, ckpt_dir, progress=False)
        assert res.resumed_from == start and res.step == 6
        assert_bit_identical(params(res.net), params(full.net))
        assert_bit_identical(params(res.ema), params(full.ema))
        assert res.history == full.history


def test_divergence_names_the_step_and_keeps_the_last_good_state(tmp_path):
    calls = []

    def nan_at_step_3(net, x, generator):
        calls.append(1)
        loss = identity_loss(net, x, generator)
        return loss * float("nan") if len(calls) == 3 else loss

    cfg = TrainConfig(steps=5, batch_size=8, ckpt_every=100)
    with pytest.raises(TrainingDiverged, match=r"step 3\b") as info:
        train(nan_at_step_3, make_net(0), DATA, cfg, tmp_path, progress=False)
    assert isinstance(info.value, RuntimeError)
    assert "lower lr" in str(info.value) and "grad_clip" in str(info.value)
    assert read_checkpoint_meta(tmp_path)["step"] == 2

    def huge(net, x, generator):
        return identity_loss(net, x, generator) + 1e4

    with pytest.raises(TrainingDiverged, match=r"step 1\b.*max_loss"):
        train(huge, make_net(0), DATA, TrainConfig(steps=2, batch_size=8, max_loss=1e3), progress=False)


def test_bad_inputs_raise_value_error(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4)
    with pytest.raises(ValueError, match="per-example"):
        train(lambda n, x, g: identity_loss(n, x, g).mean(), make_net(0), DATA, cfg, progress=False)
    with pytest.raises(ValueError, match="no examples"):
        train(identity_loss, make_net(0), DATA[:0], cfg, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        train(identity_loss, make_net(0), [], cfg, progress=False)
    with pytest.warns(UserWarning, match="compile apply on CUDA only"):
        train(identity_loss, make_net(0), DATA, TrainConfig(steps=1, batch_size=4, compile=True),
              device="cpu", progress=False)


def test_bf16_on_cpu_autocasts_only_where_the_cpu_has_native_bf16(monkeypatch):
    """TrainConfig.bf16 on the CPU: with native bfloat16 the forward pass runs in bf16 (the weights differ
    from float32 training's, but only by bf16 rounding); without, a warning names the cause and the run is
    float32 training bit for bit (emulated bf16 would be slower than float32)."""
    import gdmkit.train as T

    cfg = dict(steps=3, batch_size=8)
    fp32 = train(identity_loss, make_net(0), DATA, TrainConfig(**cfg), device="cpu", progress=False)
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no.*native bfloat16|has none"):
        emulated = train(identity_loss, make_net(0), DATA, TrainConfig(**cfg, bf16=True), device="cpu",
                         progress=False)
    assert all(torch.equal(a, b) for a, b in zip(emulated.net.parameters(), fp32.net.parameters()))
    monkeypatch.undo()
    if not T.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16: the autocast path runs where it has")
    native = train(identity_loss, make_net(0), DATA, TrainConfig(**cfg, bf16=True), device="cpu", progress=False)
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(native.net.parameters(), fp32.net.parameters())]
    assert max(diffs) > 0, "bf16 requested on a CPU with native bf16, but the run was float32"
    assert max(diffs) < 1e-2  # three AdamW steps of lr 2e-4 apart at most: bf16 rounding, not another run


@pytest.mark.parametrize("field, value, kind", [("steps", "5000", "an int"), ("lr", "0.002", "a float"),
                                               ("batch_size", 8.0, "an int"), ("bf16", "yes", "a bool"),
                                               ("seed", True, "an int"), ("grad_clip", "1", "a float"),
                                               ("lr_schedule", 1, "a str"), ("max_loss", None, "a float")])
def test_config_fields_of_the_wrong_type_name_the_field_and_the_type(field, value, kind):
    args = {"steps": 10, "batch_size": 4, field: value}
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be {kind}, got {type(value).__name__}"):
        TrainConfig(**args)
    if isinstance(value, str) and kind == "a float":  # the YAML pitfall is spelled out
        with pytest.raises(ValueError, match="not a quoted string.*2.0e-4"):
            TrainConfig(**args)


def test_config_accepts_numbers_of_a_compatible_type_and_from_dict_inverts_to_dict():
    import numpy as np

    cfg = TrainConfig(steps=np.int64(10), batch_size=4, lr=1, betas=[0, 0.5], grad_clip=None)
    assert type(cfg.steps) is int and type(cfg.lr) is float and cfg.lr == 1.0 and cfg.betas == (0.0, 0.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    full = TrainConfig(steps=7, batch_size=2, lr=3e-3, weight_decay=0.1, betas=(0.8, 0.9), grad_clip=2.0,
                       ema_decay=0.5, warmup_steps=3, lr_schedule="linear", ckpt_every=5, log_every=2, seed=9,
                       bf16=True, compile=True, channels_last=True, max_loss=10.0)
    again = TrainConfig.from_dict(json.loads(json.dumps(full.to_dict())))
    assert again == full and again.to_dict() == full.to_dict()
    assert TrainConfig.from_dict({"steps": 5, "batch_size": 2}) == TrainConfig(5, 2)  # defaults fill in
    with pytest.raises(ValueError, match=r"unknown fields \['stpes'\], missing fields \['steps'\]"):
        TrainConfig.from_dict({"stpes": 5, "batch_size": 2})


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_data_is_refused_with_what_to_do(dtype):
    cfg = TrainConfig(steps=1, batch_size=4)
    data = (DATA.abs() * 100).to(dtype)
    with pytest.raises(ValueError, match=rf"{dtype}.*x\.float\(\).*gdmkit\.data\.dequantize"):
        train(identity_loss, make_net(0), data, cfg, progress=False)
    with pytest.raises(ValueError, match=rf"a batch of the data is a {dtype}"):
        train(identity_loss, make_net(0), [data[:8]], cfg, progress=False)


def test_float64_data_trains_the_float32_network_as_float32_data_would():
    # the rule: batches are cast to the network's parameter dtype. DATA.double() holds DATA's values
    # exactly, so the run is bit-identical to the float32 run (and the network stays float32).
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2)
    seen = []

    def loss(net, x, generator):
        seen.append(x.dtype)
        return identity_loss(net, x, generator)

    a = train(loss, make_net(0), DATA.double(), cfg, progress=False)
    b = train(identity_loss, make_net(0), DATA, cfg, progress=False)
    assert set(seen) == {torch.float32} and a.net.mlp.out.weight.dtype == torch.float32
    assert_bit_identical(params(a.net), params(b.net))


def test_nan_in_the_data_is_reported_as_bad_data_not_divergence():
    data = DATA.clone()
    data[5, 1], data[9, 0], data[40, 3] = float("nan"), float("inf"), float("-inf")
    cfg = TrainConfig(steps=2, batch_size=8)
    with pytest.raises(ValueError, match=r"data contains NaN or inf in 3 of 64 rows \(the first is row 5\)"):
        train(identity_loss, make_net(0), data, cfg, progress=False)
    batches = [DATA[:8], data[:8]]  # an iterable: found when its NaN makes the loss non-finite (step 2)
    with pytest.raises(ValueError, match=r"batch of step 2 contains NaN or inf in 1 of 8 rows") as info:
        train(identity_loss, make_net(0), batches, cfg, progress=False)
    assert not isinstance(info.value, TrainingDiverged) and "lower lr" not in str(info.value)


def test_resume_with_a_different_config_raises_and_steps_may_grow(tmp_path):
    train(identity_loss, make_net(0), DATA, TrainConfig(steps=2, batch_size=4), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"batch_size \(checkpoint 4, now 8\).*new ckpt_dir"):
        train(identity_loss, make_net(0), DATA, TrainConfig(steps=2, batch_size=8), tmp_path, progress=False)
    res = train(identity_loss, make_net(0), DATA, TrainConfig(steps=3, batch_size=4), tmp_path, progress=False)
    assert res.resumed_from == 2 and res.step == 3
    with pytest.raises(ValueError, match="steps >= 3"):
        train(identity_loss, make_net(0), DATA, TrainConfig(steps=1, batch_size=4), tmp_path, progress=False)
    done = train(identity_loss, make_net(0), DATA, TrainConfig(steps=3, batch_size=4), tmp_path, progress=False)
    assert done.resumed_from == 3 and done.step == 3  # a finished run is returned as it is
    assert_bit_identical(params(done.net), params(res.net))
    linear = tmp_path / "linear"  # the linear schedule depends on the total number of steps
    train(identity_loss, make_net(0), DATA, TrainConfig(steps=2, batch_size=4, lr_schedule="linear"), linear,
          progress=False)
    with pytest.raises(ValueError, match=r"steps \(checkpoint 2, now 3\)"):
        train(identity_loss, make_net(0), DATA, TrainConfig(steps=3, batch_size=4, lr_schedule="linear"), linear,
              progress=False)


# ------------------------------------------------------------------------ DDP: 2 processes, gloo
# Rank 0 runs in this process (torch is already imported: the test stays fast), rank 1 in a fresh
# Python started like torchrun starts its workers (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).

DDP_SCRIPT = '''
import os, sys
import torch
from safetensors.torch import save_file
from gdmkit.nets import MLP
from gdmkit.train import TrainConfig, train

CFG = TrainConfig(steps=4, batch_size=8, lr=1e-2, ema_decay=0.9, ckpt_every=2, log_every=1)
DATA = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))


def make_net(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(3, hidden=16, depth=2, emb_dim=8)


def loss_fn(net, x, generator):  # no randomness: the DDP run must match one process
    return ((net(x, x.flip(1), x[:, 0]) - x) ** 2).mean(1)


if __name__ == "__main__":  # rank 1, from other initial weights: DDP must broadcast rank 0's
    res = train(loss_fn, make_net(seed=1), DATA, CFG, sys.argv[1], device="cpu", progress=True)
    out = {"net." + k: v for k, v in res.net.state_dict().items()}
    out.update({"ema." + k: v for k, v in res.ema.state_dict().items()})
    save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[2])
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_rank1(tmp_path: Path, script: Path, port: int) -> subprocess.Popen:
    src = str(Path(gdmkit.__file__).resolve().parents[1])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": "1",
           "LOCAL_RANK": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, str(script), str(tmp_path / "ckpt_rank1"), str(tmp_path / "rank1.safetensors")]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ddp_gloo_two_processes(tmp_path):
    script = tmp_path / "ddp_rank1.py"
    script.write_text(DDP_SCRIPT)
    ns = runpy.run_path(str(script), run_name="ddp_rank0")  # the same net, data, loss and config
    port = _free_port()
    child = _start_rank1(tmp_path, script, port)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=2,
                                timeout=timedelta(seconds=120))
        try:
            rank0 = train(ns["loss_fn"], ns["make_net"](0), ns["DATA"], ns["CFG"], tmp_path / "ckpt_rank0",
                          device="cpu", progress=False)
        finally:
            dist.destroy_process_group()
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, out
    assert "it/s" not in out  # only rank 0 shows progress
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert_bit_identical({"net." + k: v for k, v in rank0.net.state_dict().items()},
                         {k: v for k, v in rank1.items() if k.startswith("net.")})
    assert_bit_identical({"ema." + k: v for k, v in rank0.ema.state_dict().items()},
                         {k: v for k, v in rank1.items() if k.startswith("ema.")})
    assert read_checkpoint_meta(tmp_path / "ckpt_rank0")["extra"]["world_size"] == 2
    assert not (tmp_path / "ckpt_rank1").exists()  # only rank 0 writes checkpoints

    single = train(ns["loss_fn"], ns["make_net"](0), ns["DATA"], ns["CFG"], device="cpu", progress=False)
    for k, v in single.net.state_dict().items():  # the global batch is split, the gradient is the same
        assert torch.allclose(rank0.net.state_dict()[k], v, atol=1e-5), k
