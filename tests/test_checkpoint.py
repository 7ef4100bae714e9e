"""Tests for gdmkit.checkpoint: self-describing checkpoints (load_trained) and integrity checks.

Every unreadable file must raise CheckpointError (a ValueError) naming the file and what to do:
flipped tensor bytes, truncation, a pickle posing as a checkpoint, a foreign safetensors file, a
config that refers to a missing tensor, altered metadata.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gdmkit import bases, config, groupings, paths, schedules
from gdmkit.checkpoint import (CheckpointError, Trained, load_checkpoint, load_trained, read_checkpoint_meta,
                               save_checkpoint)
from gdmkit.nets import MLP
from gdmkit.train import TrainConfig, train

DATA = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
CFG = TrainConfig(steps=6, batch_size=8, lr=1e-2, ema_decay=0.9, ckpt_every=4, log_every=2)


def tiny_path(target: str = "u") -> paths.DiagonalPath:
    """d = 4, one component per group (GDM's AR special case), a non-white prior scale (a tensor leaf)."""
    scale = torch.tensor([0.5, 1.0, 1.5, 2.0])
    sched = schedules.GroupwiseSchedule(groupings.per_element((4,)))
    return paths.DiagonalPath(bases.Pixel((4,)), sched, scale=scale, target=target)


def make_mlp(seed: int = 0) -> MLP:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(4, hidden=16, depth=2, emb_dim=8)


@config.register
class StandInLoss:
    """A configurable loss with a ``.path`` (independent of paths.Loss): rebuilt from (target,) alone."""

    def __init__(self, target: str = "u"):
        self.target, self.path = target, tiny_path(target)
        self._fn = lambda net, x, g: self.path.loss(net, x, torch.rand(x.shape[0], generator=g),
                                                    torch.randn(x.shape, generator=g))

    def __call__(self, net, x, generator):
        return self._fn(net, x, generator)

    def to_config(self) -> dict:
        return {"type": "StandInLoss", "target": self.target, "weights": torch.arange(3.0)}

    @classmethod
    def from_config(cls, cfg):
        assert torch.equal(cfg["weights"], torch.arange(3.0))  # the tensor leaf came back from the file
        return cls(cfg["target"])


def state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real 6-step run of an MLP on the tiny path, with its checkpoint."""
    ckpt = tmp_path_factory.mktemp("run")
    loss = tiny_path().loss_fn()
    res = train(loss, make_mlp(0), DATA, CFG, ckpt, progress=False)
    return res, loss, ckpt


def _no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load executed a pickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)


def test_load_trained_rebuilds_the_run_from_the_file_alone(run, monkeypatch):
    res, loss, ckpt = run
    _no_pickle(monkeypatch)
    rng = torch.get_rng_state()
    got = load_trained(ckpt / "checkpoint.safetensors")
    assert torch.equal(torch.get_rng_state(), rng)  # building the nets did not consume the caller's RNG
    assert isinstance(got, Trained) and got.step == 6 and got.history == res.history
    assert got.train_config == CFG
    assert_same(state(got.net), state(res.net))
    assert_same(state(got.ema), state(res.ema))
    assert not got.ema.training and not any(p.requires_grad for p in got.ema.parameters())
    assert isinstance(got.loss, paths.Loss) and isinstance(got.path, paths.DiagonalPath)
    assert got.path is got.loss.path
    assert config.fingerprint(got.loss.to_config()) == config.fingerprint(loss.to_config())
    assert torch.equal(got.path.scale, loss.path.scale)
    # the rebuilt objective is the same function: equal losses for the same batch and generator
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    with torch.no_grad():
        assert torch.equal(got.loss(got.ema, DATA[:8], g1), loss(res.ema, DATA[:8], g2))
    assert got.meta["net_config"] == make_mlp().to_config()


def test_the_file_holds_every_config_and_a_checksum_per_tensor(run):
    _, loss, ckpt = run
    with safe_open(str(ckpt / "checkpoint.safetensors"), framework="pt") as f:
        keys, header = set(f.keys()), f.metadata()
    meta, sums = json.loads(header["gdmkit"]), json.loads(header["gdmkit.sha256"])
    assert "config.loss.path.scale" in keys  # tensor leaves of the loss config live in the tensor table
    assert meta["loss_config"]["path"]["scale"] == {config.TENSOR_REF: "config.loss.path.scale"}
    assert TrainConfig.from_dict(meta["config"]) == CFG
    assert set(sums["tensors"]) == keys
    sidecar = json.loads((ckpt / "checkpoint.json").read_text())
    assert sidecar["net_config"]["type"] == "MLP" and sidecar["loss_config"]["type"] == "Loss"


def test_load_trained_with_a_registered_stand_in_loss(tmp_path):
    res = train(StandInLoss("eps"), make_mlp(1), DATA, CFG, tmp_path, progress=False)
    got = load_trained(tmp_path, device="cpu")
    assert isinstance(got.loss, StandInLoss) and got.path.target == "eps"
    assert_same(state(got.ema), state(res.ema))


def test_a_net_without_config_is_saved_but_load_trained_says_what_to_do(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    save_checkpoint(tmp_path, net, ema=net, step=1)
    assert read_checkpoint_meta(tmp_path)["net_config"] is None
    with pytest.raises(CheckpointError, match=r"no network config.*load_checkpoint"):
        load_trained(tmp_path)
    load_checkpoint(tmp_path, torch.nn.Sequential(torch.nn.Linear(2, 2)))  # the weights still load


def test_resume_with_another_loss_is_refused(tmp_path):
    train(tiny_path("u").loss_fn(), make_mlp(0), DATA, TrainConfig(steps=2, batch_size=4), tmp_path,
          progress=False)
    with pytest.raises(ValueError, match=r"loss config differs.*new ckpt_dir"):
        train(tiny_path("eps").loss_fn(), make_mlp(0), DATA, TrainConfig(steps=3, batch_size=4), tmp_path,
              progress=False)
    with pytest.raises(ValueError, match=r"net config differs"):
        train(tiny_path("u").loss_fn(), MLP(4, hidden=16, depth=2, emb_dim=8, emb_scale=1.0), DATA,
              TrainConfig(steps=3, batch_size=4), tmp_path, progress=False)


# ------------------------------------------------------------------------------------ integrity


def _copy(run, tmp_path: Path) -> Path:
    dst = tmp_path / "checkpoint.safetensors"
    dst.write_bytes((run[2] / "checkpoint.safetensors").read_bytes())
    return dst


def _offsets(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return 8 + n, json.loads(raw[8:8 + n])


def _rewrite(path: Path, drop: str | None = None, meta_update: dict | None = None) -> None:
    """Write the file again without tensor ``drop`` (and its checksum) or with altered metadata."""
    with safe_open(str(path), framework="pt") as f:
        tensors, header = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    if drop is not None:
        del tensors[drop]
        sums = json.loads(header["gdmkit.sha256"])
        del sums["tensors"][drop]
        header["gdmkit.sha256"] = json.dumps(sums)
    if meta_update is not None:
        header["gdmkit"] = json.dumps({**json.loads(header["gdmkit"]), **meta_update})
    save_file(tensors, str(path), metadata=header)


def _all_loaders(path: Path):
    return (lambda: load_trained(path), lambda: load_checkpoint(path, make_mlp()))


def test_flipped_tensor_bytes_are_detected(run, tmp_path):
    path = _copy(run, tmp_path)
    start, header = _offsets(path)
    begin, end = header["ema.out.weight"]["data_offsets"]
    raw = bytearray(path.read_bytes())
    raw[start + (begin + end) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    read_checkpoint_meta(path)  # the header is intact
    for load in _all_loaders(path):
        with pytest.raises(CheckpointError, match=r"corrupted.*'ema\.out\.weight'.*sha256.*delete it") as e:
            load()
        assert str(path) in str(e.value) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("keep", [0, 5, 40, -100])
def test_a_truncated_file_says_so_and_names_the_file(run, tmp_path, keep):
    path = _copy(run, tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    with pytest.raises(CheckpointError, match="truncated.*delete it and retrain") as e:
        read_checkpoint_meta(path)
    assert str(path) in str(e.value)
    with pytest.raises(CheckpointError, match="truncated"):
        load_trained(path)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_posing_as_a_checkpoint_is_never_unpickled(run, tmp_path, monkeypatch, writer):
    path = tmp_path / "checkpoint.safetensors"
    obj = {"net": {k: v for k, v in run[0].net.state_dict().items()}}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    _no_pickle(monkeypatch)
    with pytest.raises(CheckpointError, match=r"not a safetensors checkpoint.*never unpickles") as e:
        load_trained(tmp_path)
    assert str(path) in str(e.value)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match=r"not a gdmkit checkpoint.*load_file") as e:
        load_checkpoint(path, make_mlp())
    assert str(path) in str(e.value)


def test_a_config_referring_to_a_missing_tensor_is_refused(run, tmp_path):
    path = _copy(run, tmp_path)
    _rewrite(path, drop="config.loss.path.scale")
    with pytest.raises(CheckpointError, match=r"config\.loss\.path\.scale.*retrain") as e:
        load_trained(path)
    assert str(path) in str(e.value)


def test_a_tensor_missing_from_the_table_or_altered_metadata_is_refused(run, tmp_path):
    path = _copy(run, tmp_path)
    with safe_open(str(path), framework="pt") as f:
        tensors, header = {k: f.get_tensor(k) for k in f.keys() if k != "net.out.bias"}, f.metadata()
    save_file(tensors, str(path), metadata=header)  # checksums still list net.out.bias
    with pytest.raises(CheckpointError, match=r"incomplete.*net\.out\.bias"):
        load_checkpoint(path, make_mlp())
    path = _copy(run, tmp_path)
    _rewrite(path, meta_update={"step": 999})
    with pytest.raises(CheckpointError, match="metadata does not match its sha256"):
        read_checkpoint_meta(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_trained(tmp_path / "nowhere")


def test_a_header_length_whose_first_byte_is_0x80_is_not_taken_for_a_pickle(tmp_path):
    # safetensors starts with the header length (u64, little endian): 128 + 256 m begins with the byte
    # 0x80 that also opens a pickle; such checkpoints (1 in 256) must load.
    net = MLP(2, hidden=4, depth=1, emb_dim=4)
    for pad in range(300):
        f = save_checkpoint(tmp_path / f"c{pad}.safetensors", net, step=1, extra={"pad": "x" * pad})
        if f.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    fresh = MLP(2, hidden=4, depth=1, emb_dim=4)
    assert load_checkpoint(f, fresh)["step"] == 1
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))
