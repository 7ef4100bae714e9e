"""torch.compile of the networks, checked on the CPU (issue: the GPU path, verified — what can be checked
without a GPU). ``TrainConfig(compile=True)`` compiles the network on CUDA; a graph break or a failing
backward would first show on the GPU machine, so the graph capture and AOT autograd are run here with the
``aot_eager`` backend (dynamo + AOT autograd, eager kernels: seconds, not inductor's minutes of C++ on CPU).
"""
from __future__ import annotations

import pytest
import torch

from gdmkit import nets


def _paper_unet(**kw):
    """The paper preset's architecture (4 levels, 4 ResBlocks, attention at 16x16) at a CPU width, with
    its zero-initialised output layers randomised so that output and gradients are not trivially 0."""
    torch.manual_seed(0)
    return randomize_zero_layers(nets.unet_preset("paper", 3, 32, base_channels=8, dropout=0.0, **kw))


def randomize_zero_layers(net, seed: int = 1):
    """``net`` with its zero-initialised tensors (the output layers) drawn from 0.05·N(0, 1), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return net


def _fwd_bwd(net, x, state, t):
    x = x.clone().requires_grad_()
    out = net(x, state, t)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    return out.detach(), grad


def test_paper_unet_compiles_as_one_graph_and_matches_eager():
    """fullgraph=True: the paper U-Net (state as input channels, GUD App. B's conditioning) has no graph
    break, and the compiled forward and input gradient equal eager's."""
    net = _paper_unet()
    g = torch.Generator().manual_seed(2)
    x, state = torch.randn(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    t = torch.rand(2, generator=g)
    ref_out, ref_grad = _fwd_bwd(net, x, state, t)
    torch._dynamo.reset()
    out, grad = _fwd_bwd(torch.compile(net, fullgraph=True, backend="aot_eager"), x, state, t)
    assert ref_out.abs().max() > 0 and ref_grad.abs().max() > 0
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.xfail(strict=True, raises=RuntimeError,
                   reason="PyTorch's AOT autograd emits a view of a transposed gradient whose runtime strides "
                          "differ from the traced ones (a LayerNorm gradient of the state encoder reaching a "
                          "token-mixing product): 'view size is not compatible'. The inductor backend, the one "
                          "TrainConfig(compile=True) uses, compiles it (by hand on this CPU, laptop preset: "
                          "relative difference 2.6e-6 in the output, 4.7e-6 in the gradient). Strict: this test "
                          "fails once PyTorch is fixed, and then becomes a plain check")
def test_cross_attention_unet_under_aot_eager():
    """GUD App. A's conditioning (state tokens, MLP-Mixer, cross-attention at every level) under aot_eager."""
    net = _paper_unet(state_conditioning="cross_attention", position_labels=torch.rand(1, 3, 32, 32))
    g = torch.Generator().manual_seed(3)
    x, state = torch.randn(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    t = torch.rand(2, generator=g)
    torch._dynamo.reset()
    _fwd_bwd(torch.compile(net, fullgraph=True, backend="aot_eager"), x, state, t)
