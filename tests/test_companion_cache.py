"""Tests for gdmkit.companion.cache: the model cache keys on configs, loads instead of retraining and
survives a corrupt entry."""
from __future__ import annotations

import dataclasses
import json
import re
import warnings

import pytest
import torch
from torch import nn

from gdmkit import bases, companion, config, groupings, nets, paths, schedules
from gdmkit.train import TrainConfig

SHAPE = (1, 4, 4)  # small images: every basis (DCT, blur, Haar, PCA) and grouping applies
D = 16


def _data(seed: int = 0) -> torch.Tensor:
    return torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _log_var() -> torch.Tensor:
    return -torch.linspace(0.0, 3.0, D, dtype=torch.float64).reshape(SHAPE)


def _freq() -> torch.Tensor:
    return torch.arange(D, dtype=torch.float64).reshape(SHAPE).sqrt()


def _column() -> torch.Tensor:
    return torch.arange(4).expand(SHAPE).clone()


def _gdm(grouping=None, intervals=None):
    return schedules.GroupwiseSchedule(grouping or groupings.blocks(SHAPE, 2), intervals)


def _linear(a=1.0, r=0.0, sigma_min=None, power=None, gamma_noise=-3.0):
    order = schedules.ordering_fourier(_log_var(), _freq(), r)
    return schedules.LinearGamma(_log_var(), order, a, gamma_noise=gamma_noise, sigma_min=sigma_min,
                                 power=power)


def _setup(basis=lambda: bases.DCT(SHAPE), schedule=_gdm, scale=None, target="u", weighting="target",
           sampler=None, times=lambda: paths.UniformTimes(), net=None, data=0, cfg=None, init_seed=0):
    """(loss, net, data, cfg) built from scratch; each argument is a factory or a plain value."""
    basis = basis()
    path = paths.DiagonalPath(basis, schedule(), None if scale is None else scale(basis), target, weighting)
    loss = path.loss_fn(schedule_sampler=None if sampler is None else sampler(), time_sampler=times())
    torch.manual_seed(init_seed)
    network = net() if net is not None else nets.MLP(D, hidden=8, depth=1, emb_dim=4)
    return loss, network, _data(data), cfg or TrainConfig(steps=3, batch_size=8, lr=1e-2, log_every=1)


def _key(**kw) -> str:
    return companion.key_hash(companion.model_key(*_setup(**kw)))


# (what changes, one setup, the other): each pair is two models that must not share a cache entry
PAIRS = {
    "basis DCT vs Pixel": ({}, {"basis": lambda: bases.Pixel(SHAPE)}),
    "GaussianBlur sigma": ({"basis": lambda: bases.GaussianBlur(SHAPE, 1.0)},
                           {"basis": lambda: bases.GaussianBlur(SHAPE, 2.0)}),
    "Haar levels": ({"basis": lambda: bases.Haar(SHAPE, 1)}, {"basis": lambda: bases.Haar(SHAPE, 2)}),
    "PCA fitted on other data": ({"basis": lambda: bases.PCA.fit(_data(1))},
                                 {"basis": lambda: bases.PCA.fit(_data(2))}),
    "grouping order": ({}, {"schedule": lambda: _gdm(groupings.blocks(SHAPE, 2, order=[3, 2, 1, 0]))}),
    "grouping family": ({}, {"schedule": lambda: _gdm(groupings.cdm(SHAPE))}),
    "GDM intervals": ({}, {"schedule": lambda: _gdm(intervals=schedules.gdm_intervals([0.1, 0.2, 0.5]))}),
    "GUD a": ({"schedule": lambda: _linear(a=1.0)}, {"schedule": lambda: _linear(a=2.0)}),
    "GUD r ordering": ({"schedule": lambda: _linear(r=0.0)}, {"schedule": lambda: _linear(r=0.5)}),
    "GUD sigma_min": ({"schedule": lambda: _linear()}, {"schedule": lambda: _linear(sigma_min=0.5)}),
    "GUD s(t) power": ({"schedule": lambda: _linear()}, {"schedule": lambda: _linear(power=0.5)}),
    "GUD column b": ({"schedule": lambda: schedules.ColumnGamma(_column(), 0.3)},
                     {"schedule": lambda: schedules.ColumnGamma(_column(), 0.5)}),
    "prior scale": ({}, {"scale": lambda b: paths.variance_matching_scale(b, _data())}),
    "target": ({}, {"target": "eps"}),
    "weighting": ({}, {"weighting": "velocity"}),
    "schedule sampler vs none": (
        {}, {"sampler": lambda: schedules.schedule_sampler(groupings.blocks(SHAPE, 2))}),
    "schedule sampler family": (
        {"sampler": lambda: schedules.schedule_sampler([groupings.blocks(SHAPE, 2)])},
        {"sampler": lambda: schedules.schedule_sampler([groupings.blocks(SHAPE, 2), groupings.cdm(SHAPE)])}),
    "schedule sampler shuffle": (
        {"sampler": lambda: schedules.schedule_sampler(groupings.blocks(SHAPE, 2))},
        {"sampler": lambda: schedules.schedule_sampler(groupings.blocks(SHAPE, 2), shuffle=True)}),
    "time sampler": ({}, {"times": lambda: paths.DiscreteTimes(8)}),
    "network width": ({}, {"net": lambda: nets.MLP(D, hidden=16, depth=1, emb_dim=4)}),
    # same initial weights, another computation: only the net's config can tell
    "network emb_scale": ({}, {"net": lambda: nets.MLP(D, hidden=8, depth=1, emb_dim=4, emb_scale=500.0)}),
    "initial weights": ({}, {"init_seed": 1}),
    "data": ({}, {"data": 1}),
}


@pytest.mark.parametrize("what", sorted(PAIRS))
def test_any_parameter_change_changes_the_key_and_rebuilding_does_not(what):
    a, b = PAIRS[what]
    ka, kb = _key(**a), _key(**b)
    assert ka != kb, what
    assert _key(**a) == ka and _key(**b) == kb  # equal objects built again from scratch: the same key


# a changed, valid value for every TrainConfig field
TRAIN_CHANGES = {"steps": 4, "batch_size": 16, "lr": 5e-3, "weight_decay": 0.1, "betas": (0.8, 0.99),
                 "grad_clip": None, "ema_decay": 0.9, "warmup_steps": 1, "lr_schedule": "linear",
                 "ckpt_every": 2, "log_every": 2, "seed": 1, "bf16": True, "compile": True,
                 "channels_last": True, "max_loss": 10.0}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(TrainConfig)])
def test_every_train_config_field_changes_the_key(field):
    assert field in TRAIN_CHANGES, f"TrainConfig.{field} is new: add a changed value to TRAIN_CHANGES"
    base = TrainConfig(steps=3, batch_size=8, lr=1e-2, log_every=1)
    changed = dataclasses.replace(base, **{field: TRAIN_CHANGES[field]})
    assert getattr(changed, field) != getattr(base, field)
    assert _key(cfg=base) != _key(cfg=changed)


def test_the_key_holds_configs_and_the_source_of_the_model_modules():
    loss, net, data, cfg = _setup(basis=lambda: bases.PCA.fit(_data(1)))
    key = companion.model_key(loss, net, data, cfg, device="cpu")
    assert set(key) == {"loss", "net", "initial_weights", "data", "train_config", "source", "cpu_threads"}
    assert key["cpu_threads"] == torch.get_num_threads()
    fp = config.fingerprint
    assert fp(key["loss"]) == fp(loss.to_config()) and fp(key["net"]) == fp(net.to_config())
    assert key["initial_weights"] == config.fingerprint(net.state_dict())
    assert key["data"] == config.fingerprint(data) and key["train_config"] == cfg.to_dict()
    assert companion.key_hash(key) == config.fingerprint(key)[:20]
    rebuilt = config.from_config(key["loss"])  # the key describes a loss that rebuilds exactly
    assert config.fingerprint(rebuilt.to_config()) == config.fingerprint(key["loss"])


@pytest.mark.parametrize("bad", ["loss", "net"])
def test_objects_without_to_config_are_refused(bad, tmp_path):
    loss, net, data, cfg = _setup()

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, D)

        def forward(self, x, state, summary):
            return self.lin(x.flatten(1)).reshape(x.shape)

    if bad == "loss":
        inner = loss
        loss = lambda net, x, generator=None: inner(net, x, generator)  # noqa: E731 - a bare callable
    else:
        net = Plain()
    for cache_dir in (tmp_path, None):
        with pytest.raises(ValueError, match=f"cached_train needs a {bad} with to_config()"):
            companion.cached_train(loss, net, data, cfg, cache_dir=cache_dir)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_cached_train_loads_instead_of_retraining(tmp_path):
    first = companion.cached_train(*_setup(), cache_dir=tmp_path)
    again = companion.cached_train(*_setup(), cache_dir=tmp_path)
    assert (first.resumed_from, again.resumed_from) == (0, 3)  # the second run trained nothing
    for p, q in zip(first.ema.parameters(), again.ema.parameters()):
        assert torch.equal(p, q)
    assert not again.ema.training
    other = companion.cached_train(*_setup(target="eps"), cache_dir=tmp_path)
    assert other.resumed_from == 0  # another target is another model
    keys = sorted(tmp_path.glob("*/key.json"))
    assert len(keys) == 2
    for f in keys:
        assert f.parent.name == companion.key_hash(companion.model_key(*_setup(
            target=json.loads(f.read_text())["loss"]["path"]["target"])))


def test_the_cpu_thread_count_is_part_of_the_key(tmp_path):
    """Another intra-op thread count reorders the reductions (other bytes from the same seed): a model
    trained on 1 thread is not loaded for 2, and the key names the count; a CUDA run does not carry it."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = companion.cached_train(*_setup(), cache_dir=tmp_path, device="cpu")
        key_one = companion.model_key(*_setup(), device="cpu")
        torch.set_num_threads(2)
        two = companion.cached_train(*_setup(), cache_dir=tmp_path, device="cpu")
        key_two = companion.model_key(*_setup(), device="cpu")
        assert (one.resumed_from, two.resumed_from) == (0, 0)  # trained again, not loaded
        assert (key_one["cpu_threads"], key_two["cpu_threads"]) == (1, 2)
        assert len(list(tmp_path.glob("*/key.json"))) == 2
        assert "cpu_threads" not in companion.model_key(*_setup(), device="cuda")
    finally:
        torch.set_num_threads(before)


def test_key_json_is_the_key_with_tensor_leaves_by_fingerprint(tmp_path):
    pca = bases.PCA.fit(_data(1))
    loss, net, data, cfg = _setup(basis=lambda: pca)
    companion.cached_train(loss, net, data, cfg, cache_dir=tmp_path)
    (key_file,) = tmp_path.glob("*/key.json")
    on_disk = json.loads(key_file.read_text())
    plain, tensors = config.split_tensors(companion.model_key(*_setup(basis=lambda: pca)), prefix="key")
    assert tensors, "a fitted PCA has tensor leaves"
    assert on_disk["train_config"]["steps"] == 3 and on_disk["loss"]["type"] == "Loss"

    def leaves(v):
        if isinstance(v, dict):
            if "$tensor" in v:
                yield v
            else:
                for x in v.values():
                    yield from leaves(x)
        elif isinstance(v, list):
            for x in v:
                yield from leaves(x)

    refs = {v["$tensor"]: v for v in leaves(on_disk)}
    assert set(refs) == set(tensors)
    for name, t in tensors.items():
        assert refs[name]["fingerprint"] == config.fingerprint(t) and refs[name]["shape"] == list(t.shape)


def test_a_corrupt_cache_entry_is_moved_aside_with_a_warning_and_retrained(tmp_path):
    first = companion.cached_train(*_setup(), cache_dir=tmp_path)
    (ckpt,) = tmp_path.glob("*/*.safetensors")
    raw = bytearray(ckpt.read_bytes())
    raw[-40:] = bytes(b ^ 0xFF for b in raw[-40:])  # flip the last tensor bytes
    ckpt.write_bytes(bytes(raw))
    msg = rf"the cached model in {re.escape(str(ckpt.parent))} is unreadable.*training again"
    with pytest.warns(UserWarning, match=msg):
        again = companion.cached_train(*_setup(), cache_dir=tmp_path)
    assert again.resumed_from == 0  # retrained from the initial weights ...
    for p, q in zip(first.ema.parameters(), again.ema.parameters()):
        assert torch.equal(p, q)  # ... to the same weights (training is deterministic)
    aside = list((tmp_path / "corrupt").iterdir())
    assert [p.name for p in aside] == [f"{ckpt.parent.name}.0"] and (aside[0] / ckpt.name).read_bytes() == raw
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = companion.cached_train(*_setup(), cache_dir=tmp_path)
    assert third.resumed_from == 3  # the new entry is sound


def test_a_truncated_checkpoint_is_retrained_too(tmp_path):
    companion.cached_train(*_setup(), cache_dir=tmp_path)
    (ckpt,) = tmp_path.glob("*/*.safetensors")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        assert companion.cached_train(*_setup(), cache_dir=tmp_path).resumed_from == 0


def test_history_frame_labels_every_row():
    df = companion.history_frame([(1, 0.5), (2, 0.25)], model="gdm")
    assert df.to_dict("list") == {"step": [1, 2], "loss": [0.5, 0.25], "model": ["gdm", "gdm"]}
