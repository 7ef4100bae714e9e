"""Tests for gdmkit.features: the classifier learns and is reproducible, batched extraction equals one
pass, and the offline paths: missing weights raise errors that say where to put them, nothing downloads."""
from __future__ import annotations

import socket

import pytest
import torch

from gdmkit import data as D
from gdmkit import features as Fe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- extractors
def test_identity_features_and_batched_extraction():
    x = torch.randn(7, 2, 3, 3, generator=gen(1))
    phi = Fe.IdentityFeatures()
    assert phi.name == "pixels" and isinstance(phi, Fe.FeatureExtractor)
    assert torch.equal(phi(x), x.reshape(7, 18))
    f = Fe.extract(phi, x, batch_size=3)                       # chunks of 3, 3, 1 give the same rows
    assert f.dtype == torch.float64 and torch.equal(f, x.reshape(7, 18).double())
    with pytest.raises(ValueError, match="batch_size"):
        Fe.extract(phi, x, batch_size=0)


def test_train_classifier_learns_and_is_deterministic():
    x, y = D.digits(split="train")
    clf = Fe.train_classifier(x, y, steps=60, dataset="digits", generator=gen(16))
    xt, yt = D.digits(split="test")
    assert (clf.logits(xt).argmax(1) == yt).float().mean() > 0.8  # chance is 0.1
    assert clf.name == "classifier[digits]" and isinstance(clf, Fe.FeatureExtractor)
    assert clf(xt[:5]).shape == (5, 64) and not any(p.requires_grad for p in clf.parameters())
    state = torch.get_rng_state()
    a = Fe.train_classifier(x[:64], y[:64], steps=2, dataset="d", generator=gen(1))
    b = Fe.train_classifier(x[:64], y[:64], steps=2, dataset="d", generator=gen(1))
    c = Fe.train_classifier(x[:64], y[:64], steps=2, dataset="d", generator=gen(2))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_train_classifier_bad_arguments():
    x, y = D.digits(split="test")
    with pytest.raises(ValueError, match="label"):
        Fe.train_classifier(x[:5], y[:4], steps=1, dataset="d")
    with pytest.raises(ValueError, match=r"shape=\(C, H, W\)"):
        Fe.train_classifier(x[:5, 0], y[:5], steps=1, dataset="d")
    with pytest.raises(ValueError, match="batch_size"):
        Fe.train_classifier(x[:5], y[:5], steps=1, dataset="d", batch_size=0)


# ----------------------------------------------------------------------------- no weights, no network
@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub, no weight env vars, and any network or download attempt fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    for v in ("GDMKIT_INCEPTION_WEIGHTS", "GDMKIT_VGG19_WEIGHTS"):
        monkeypatch.delenv(v, raising=False)

    def no_net(*a, **k):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_net)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_net)
    return tmp_path


def test_missing_weights_raise_clear_errors(offline):
    x = torch.rand(4, 3, 8, 8, generator=gen(18)) * 2 - 1
    with pytest.raises(Fe.WeightsNotFoundError) as e:
        Fe.fid_inception(x, x)
    msg = str(e.value)
    assert Fe.INCEPTION_URL in msg and str(offline / "torch" / "hub" / "checkpoints") in msg
    assert "GDMKIT_INCEPTION_WEIGHTS" in msg and isinstance(e.value, FileNotFoundError)
    with pytest.raises(Fe.WeightsNotFoundError, match="GDMKIT_INCEPTION_WEIGHTS"):
        Fe.inception_fid()
    with pytest.raises(Fe.WeightsNotFoundError, match="vgg19"):
        Fe.VGG19Features()
    fallback = Fe.IdentityFeatures()
    assert Fe.perceptual_features(fallback) is fallback


def test_find_weights_search_order(offline, monkeypatch):
    f = offline / "w.pth"
    f.write_bytes(b"")
    assert Fe.find_weights(Fe.INCEPTION_URL, f) == f
    with pytest.raises(Fe.WeightsNotFoundError, match="no weights file"):
        Fe.find_weights(Fe.INCEPTION_URL, offline / "missing.pth")
    monkeypatch.setenv("GDMKIT_INCEPTION_WEIGHTS", str(f))
    assert Fe.find_weights(Fe.INCEPTION_URL, None, "GDMKIT_INCEPTION_WEIGHTS") == f
    hub = offline / "torch" / "hub" / "checkpoints" / "vgg19-dcbbb0ee.pth"
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"")
    assert Fe.find_weights(Fe.VGG19_URL) == hub


def test_fid_update_feeds_8bit_rgb():
    """What the Inception metric receives: uint8 RGB, grey channels repeated, in batch_size chunks."""
    class Recorder:
        def __init__(self):
            self.calls = []

        def update(self, imgs, real):
            self.calls.append((imgs, real))

    grey = torch.rand(5, 1, 4, 4, generator=gen(3)) * 2 - 1
    rec = Recorder()
    Fe.fid_update(rec, grey, True, batch_size=2)
    assert [c[0].shape[0] for c in rec.calls] == [2, 2, 1] and all(c[1] for c in rec.calls)
    got = torch.cat([c[0] for c in rec.calls])
    assert got.dtype == torch.uint8 and got.shape == (5, 3, 4, 4)
    assert torch.equal(got, ((grey + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1))
