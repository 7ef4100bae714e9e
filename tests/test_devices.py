"""The GPU code paths, on every device present: the CPU always, CUDA where a GPU is visible.

Issue "The GPU path, verified" lists what must run on a real GPU: bf16 autocast and channels_last in
training, a checkpoint written on the device and resumed, the samplers and the likelihood on the device.
Each test below runs that path on each device in ``DEVICES``; ``scripts/gpu_check.sh`` runs this file on
the GPU machine. On the CPU the same code runs, with bf16 (without native bfloat16) and channels_last
falling back to float32 / the default layout as ``TrainConfig`` documents, so what these tests check there
is the plumbing: the GPU run is what checks the kernels.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from gdmkit import bases, groupings, likelihood, nets, paths, sampling, schedules
from gdmkit.checkpoint import load_trained
from gdmkit.train import TrainConfig, train
from test_compile import _fwd_bwd, _paper_unet, randomize_zero_layers

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPE = (3, 8, 8)


def _net():
    """A smoke U-Net whose zero-initialised output layers are randomised (outputs and gradients not 0)."""
    torch.manual_seed(0)
    return randomize_zero_layers(nets.unet_preset("smoke", SHAPE[0], SHAPE[1], dropout=0.0))


def _path():
    """GDM-F: the DCT basis in two frequency bands, the lowest 8 components per channel first."""
    basis = bases.DCT(SHAPE)
    return paths.DiagonalPath(basis, schedules.GroupwiseSchedule(groupings.frequency_bands(basis.labels()["rank"],
                                                                                           [8])))


#: resumed against uninterrupted: bitwise on the CPU (training is reproducible there), on CUDA up to bf16 and
#: the reordering of atomic additions
_RESUMED = {"cpu": dict(rtol=0, atol=0), "cuda": dict(rtol=2e-2, atol=2e-3)}


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_channels_last_training_resumes_from_its_checkpoint_as_if_uninterrupted(device, tmp_path):
    x = torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
    loss = _path().loss_fn()
    cfg = dict(batch_size=8, lr=1e-3, ckpt_every=2, log_every=1, seed=3, bf16=True, channels_last=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CPU's fallbacks say so in warnings
        whole = train(loss, _net(), x, TrainConfig(steps=6, **cfg), tmp_path / "whole", device=device,
                      progress=False)
        first = train(loss, _net(), x, TrainConfig(steps=3, **cfg), tmp_path / "split", device=device,
                      progress=False)
        rest = train(loss, _net(), x, TrainConfig(steps=6, **cfg), tmp_path / "split", device=device,
                     progress=False)
    assert first.step == 3 and rest.resumed_from == 3 and rest.step == whole.step == 6
    assert next(rest.net.parameters()).device.type == device
    for a, b in zip(whole.ema.state_dict().values(), rest.ema.state_dict().values()):
        torch.testing.assert_close(b, a, **_RESUMED[device])
    # the checkpoint written on the device loads (verified) on the CPU, with the EMA weights of the run
    loaded = load_trained(tmp_path / "split", device="cpu")
    for a, b in zip(rest.ema.state_dict().values(), loaded.ema.state_dict().values()):
        assert b.device.type == "cpu"
        torch.testing.assert_close(b, a.cpu(), rtol=0, atol=0)


#: float32 against float64: on the CPU float32 round-off (measured: 6e-7 in x, 2e-4 bits/dim, the adaptive
#: steps differing by a rejection); on CUDA cuDNN's convolutions run in TF32 by default (10-bit mantissa)
_F32 = {"cpu": {"x": 1e-5, "bpd": 1e-3}, "cuda": {"x": 2e-2, "bpd": 1e-2}}


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_and_likelihood_in_float32_on_the_device_agree_with_float64_on_the_cpu(device):
    path, net = _path(), _net().eval()
    k = path.schedule.grouping.k
    grid = path.schedule.time_grid(sampling.per_group_steps(k, 4 * k))
    z = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(4))
    ref = sampling.generate(path, net.double(), 6, grid, latents=z.double())  # float64, CPU
    x_dev = sampling.generate(path, net.float().to(device), 6, grid, latents=z, device=device)
    assert x_dev.device.type == device and x_dev.dtype == torch.float32
    torch.testing.assert_close(x_dev.cpu().double(), ref, rtol=0, atol=_F32[device]["x"])
    xe = ref.clamp(-1, 1)
    probes = 2.0 * torch.randint(0, 2, (1, *xe.shape), generator=torch.Generator().manual_seed(5)) - 1.0
    kw = dict(probes=probes, rtol=1e-5, atol=1e-5, method="rk45")
    b_ref = likelihood.data_bits_per_dim(path.denoiser(net.cpu().double()), xe, path, **kw)
    b_dev = likelihood.data_bits_per_dim(path.denoiser(net.float().to(device)), xe.float().to(device), path, **kw)
    assert b_dev.device.type == device and torch.isfinite(b_dev).all()
    # float32 against float64: the adaptive steps may differ by a rejection, within the tolerance
    torch.testing.assert_close(b_dev.cpu().double(), b_ref, rtol=0, atol=_F32[device]["bpd"])


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device: inductor is what TrainConfig(compile=True) uses there; "
                           "tests/test_compile.py captures the same graphs on the CPU (aot_eager)")
@pytest.mark.parametrize("conditioning", ["channels", "cross_attention"])
@pytest.mark.parametrize("fullgraph", [False, True])
def test_inductor_compiled_paper_unet_matches_eager_on_cuda(conditioning, fullgraph):
    kw = {} if conditioning == "channels" else {"state_conditioning": "cross_attention",
                                                 "position_labels": torch.rand(1, 3, 32, 32)}
    net = _paper_unet(**kw).cuda()
    g = torch.Generator().manual_seed(2)
    x, state = torch.randn(2, 3, 32, 32, generator=g).cuda(), torch.rand(2, 3, 32, 32, generator=g).cuda()
    t = torch.rand(2, generator=g).cuda()
    ref_out, ref_grad = _fwd_bwd(net, x, state, t)
    torch._dynamo.reset()
    out, grad = _fwd_bwd(torch.compile(net, fullgraph=fullgraph), x, state, t)
    assert ref_out.abs().max() > 0 and ref_grad.abs().max() > 0
    # inductor fuses and reorders reductions, and TF32 is cuDNN's default on both sides
    torch.testing.assert_close(out, ref_out, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-3)
