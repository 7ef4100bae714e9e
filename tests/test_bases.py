"""Tests for gdmkit.bases: orthogonality, Parseval, closed forms and the papers' worked examples."""
from __future__ import annotations

import math

import pytest
import torch

from gdmkit.bases import (DCT, PCA, Basis, Fourier, GaussianBlur, Haar, Orthogonal, Pixel,
                          gaussian_blur_matrix, make_basis)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pca_data(shape, n: int = 64, seed: int = 1) -> torch.Tensor:
    """Correlated data: smooth random fields plus noise, so the covariance has structure."""
    g = _gen(seed)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    if len(shape) == 3:
        x = x + 2 * torch.cumsum(torch.cumsum(x, dim=-1), dim=-2) / shape[-1]
    return x


def _bases(shape):
    """One of every basis for an image shape (C, H, W)."""
    out = [Pixel(shape), DCT(shape), GaussianBlur(shape, sigma=1.0), Fourier(shape),
           Haar(shape, levels=2), PCA.fit(_pca_data(shape))]
    return {type(b).__name__: b for b in out}


SHAPES = [(3, 8, 8), (1, 8, 16)]
NAMES = ["Pixel", "DCT", "GaussianBlur", "Fourier", "Haar", "PCA"]


@pytest.fixture(scope="module")
def bases():
    return {shape: _bases(shape) for shape in SHAPES}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_parseval(bases, name, shape, dtype, tol):
    basis = bases[shape][name]
    x = torch.randn(4 if shape[0] == 3 else 2, *shape, generator=_gen(), dtype=dtype)
    c = basis.to_coeffs(x)
    assert c.dtype == dtype and c.shape == x.shape
    assert ((basis.from_coeffs(c) - x).norm() / x.norm()).item() < tol
    assert abs(c.norm().item() / x.norm().item() - 1) < tol


def test_orthogonal_vector_basis_round_trip():
    basis = Orthogonal.random(6, generator=_gen(3))
    x = torch.randn(5, 6, generator=_gen(), dtype=torch.float64)
    c = basis.to_coeffs(x)
    torch.testing.assert_close(c, x @ basis.U)  # c_i = <U[:, i], x>
    torch.testing.assert_close(basis.from_coeffs(c), x)
    torch.testing.assert_close(basis.matrix(), basis.U)
    torch.testing.assert_close(basis.labels()["rank"], torch.arange(6))


def test_orthogonal_random_is_seeded():
    a = Orthogonal.random(5, generator=_gen(7)).U
    b = Orthogonal.random(5, generator=_gen(7)).U
    assert torch.equal(a, b)
    assert not torch.equal(a, Orthogonal.random(5, generator=_gen(8)).U)


@pytest.mark.parametrize("name", NAMES)
def test_matrix_is_orthogonal(bases, name):
    U = bases[(1, 8, 16)][name].matrix()
    assert U.shape == (128, 128)
    torch.testing.assert_close(U.T @ U, torch.eye(128, dtype=U.dtype), atol=1e-12, rtol=0)


def test_matrix_refuses_large_d():
    with pytest.raises(ValueError, match="dense 12288×12288 .* use to_coeffs"):
        Pixel((3, 64, 64)).matrix()


def _dct_matrix(n: int) -> torch.Tensor:
    """Textbook orthonormal DCT-II, C[k, m] = s_k cos(π k (2m+1) / 2N)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    m = torch.arange(n, dtype=torch.float64)[None, :]
    s = torch.full((n, 1), math.sqrt(2 / n), dtype=torch.float64)
    s[0] = math.sqrt(1 / n)
    return s * torch.cos(math.pi * k * (2 * m + 1) / (2 * n))


@pytest.mark.parametrize("method", ["matmul", "fft"])
@pytest.mark.parametrize("shape", [(2, 8, 8), (1, 5, 12), (1, 7, 1)])
def test_dct_equals_textbook_matrix(shape, method):
    x = torch.randn(3, *shape, generator=_gen(), dtype=torch.float64)
    expected = _dct_matrix(shape[1]) @ x @ _dct_matrix(shape[2]).T  # separable C_H X C_Wᵀ
    basis = DCT(shape, method=method)
    torch.testing.assert_close(basis.to_coeffs(x), expected)
    torch.testing.assert_close(basis.from_coeffs(expected), x)


def test_dct_labels():
    lab = DCT((2, 4, 6)).labels()
    assert lab["kh"][1, 3, 5] == 3 and lab["kw"][1, 3, 5] == 5
    torch.testing.assert_close(lab["frequency"][0, 3, 5], torch.tensor(math.sqrt(34.0)))
    r = lab["rank"][0]
    # (0,0) first; (0,1) before (1,0) (same k², smaller k_h first); (1,1) after both
    assert r[0, 0] == 0 and r[0, 1] == 1 and r[1, 0] == 2 and r[1, 1] == 3 and r[0, 2] == 4
    k2 = (lab["kh"][0] ** 2 + lab["kw"][0] ** 2).flatten()
    order = torch.argsort(r.flatten())
    assert torch.all(k2[order][1:] >= k2[order][:-1])


def test_blur_matrix_is_symmetric_stochastic():
    n, sigma, R = 20, 1.5, 6  # kernel support |m| ≤ ⌈4σ⌉ = 6
    W = gaussian_blur_matrix(n, sigma)
    torch.testing.assert_close(W, W.T)
    torch.testing.assert_close(W.sum(dim=1), torch.ones(n, dtype=torch.float64))
    m = torch.arange(-R, R + 1, dtype=torch.float64)
    g = torch.exp(-m**2 / (2 * sigma**2))
    g = g / g.sum()
    # an interior row is the normalised kernel, zero beyond its support
    torch.testing.assert_close(W[10, 10 - R:10 + R + 1], g)
    assert W[10, :10 - R].abs().max() == 0 and W[10, 10 + R + 1:].abs().max() == 0
    # row 0 mirrors x_{-1-j} onto x_j: W[0, j] = g(j) + g(j + 1)
    torch.testing.assert_close(W[0, :R], g[R:2 * R] + g[R + 1:])


def test_blur_eigendecomposition():
    basis = GaussianBlur((2, 6, 10), sigma=1.2)
    for Q, lam, n in [(basis.Q_h, basis.lambda_h, 6), (basis.Q_w, basis.lambda_w, 10)]:
        torch.testing.assert_close(Q @ torch.diag(lam) @ Q.T, gaussian_blur_matrix(n, 1.2))
        assert torch.all(lam[1:] < lam[:-1])  # descending
        torch.testing.assert_close(lam[0], torch.tensor(1.0, dtype=lam.dtype))  # constants pass


def test_blur_transform_diagonalises_blur():
    shape = (2, 6, 10)
    basis = GaussianBlur(shape, sigma=1.2)
    x = torch.randn(3, *shape, generator=_gen(), dtype=torch.float64)
    blurred = gaussian_blur_matrix(6, 1.2) @ x @ gaussian_blur_matrix(10, 1.2)  # W_H X W_W
    lam = basis.lambda_h[:, None] * basis.lambda_w[None, :]  # (H, W) eigenvalues of W_H ⊗ W_W
    torch.testing.assert_close(basis.to_coeffs(blurred), lam * basis.to_coeffs(x))
    torch.testing.assert_close(basis.labels()["eigenvalue"], lam.expand(shape).float())
    eig = lam.flatten()[torch.argsort(basis.labels()["rank"][0].flatten())]
    assert torch.all(eig[1:] <= eig[:-1])


def test_blur_basis_with_reflect_boundary_is_the_dct():
    """Half-sample symmetric convolution is diagonalised by DCT-II (distinct eigenvalues here)."""
    basis = GaussianBlur((1, 8, 8), sigma=1.0)
    torch.testing.assert_close(basis.Q_h, _dct_matrix(8).T)


@pytest.mark.parametrize("k", [(0, 0), (1, 2), (3, -1), (4, 0), (2, 4)])
def test_fourier_cosine_energy_on_its_frequency(k):
    H, W = 8, 8
    n_h, n_w = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                              torch.arange(W, dtype=torch.float64), indexing="ij")
    x = torch.cos(2 * math.pi * (k[0] * n_h / H + k[1] * n_w / W))
    basis = Fourier((1, H, W))
    c = basis.to_coeffs(x[None, None])[0, 0]
    on = (basis.labels()["frequency"][0] - math.hypot(*k)).abs() < 1e-4
    assert c[on].norm() > 1 and c[~on].abs().max() < 1e-12
    assert abs(c.norm() ** 2 - (x**2).sum()) < 1e-9


def test_fourier_is_an_involution_and_labels():
    basis = Fourier((2, 6, 8))
    x = torch.randn(3, 2, 6, 8, generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(basis.to_coeffs(basis.to_coeffs(x)), x)
    lab = basis.labels()
    assert lab["kh"][0, :, 0].tolist() == [0, 1, 2, -3, -2, -1]
    assert lab["kw"][0, 0].tolist() == [0, 1, 2, 3, -4, -3, -2, -1]
    assert lab["rank"][0, 0, 0] == 0
    f = lab["frequency"][0].flatten()[torch.argsort(lab["rank"][0].flatten())]
    assert torch.all(f[1:] >= f[:-1])


# GUD App. D eq. (26) on X below, by hand: rows (0,1) and (2,3) give
# L = [4, 3, 5, 6]/√2, [6, 1, 3, 5]/√2 and H = [-2, 1, -5, 2]/√2, [-6, -1, 1, -1]/√2;
# then column pairs give LL = [[3.5, 5.5], [3.5, 4]], LH = [[0.5, -0.5], [2.5, -1]],
# HL = [[-0.5, -1.5], [-3.5, 0]], HH = [[-1.5, -3.5], [-2.5, 1]].
HAAR_X = [[1.0, 2, 0, 4], [3, 1, 5, 2], [0, 0, 2, 2], [6, 1, 1, 3]]
HAAR_1 = [[3.5, 5.5, 0.5, -0.5], [3.5, 4.0, 2.5, -1.0], [-0.5, -1.5, -1.5, -3.5], [-3.5, 0.0, -2.5, 1.0]]
# level 2 on LL^(1): L = [7, 9.5]/√2, H = [0, 1.5]/√2 -> LL = 8.25, LH = -1.25, HL = 0.75, HH = -0.75
HAAR_2 = [[8.25, -1.25, 0.5, -0.5], [0.75, -0.75, 2.5, -1.0], [-0.5, -1.5, -1.5, -3.5],
          [-3.5, 0.0, -2.5, 1.0]]


@pytest.mark.parametrize("levels,expected", [(1, HAAR_1), (2, HAAR_2)])
def test_haar_matches_eq_26_by_hand(levels, expected):
    x = torch.tensor(HAAR_X, dtype=torch.float64)[None, None]
    basis = Haar((1, 4, 4), levels=levels)
    torch.testing.assert_close(basis.to_coeffs(x)[0, 0], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(basis.from_coeffs(basis.to_coeffs(x)), x)


def test_haar_labels_two_levels():
    lab = {k: v[0].tolist() for k, v in Haar((2, 4, 4), levels=2).labels().items()}
    assert lab["level"] == [[2, 2, 1, 1], [2, 2, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert lab["band"] == [[0, 1, 1, 1], [2, 3, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert lab["column"] == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 1, 0, 1], [0, 1, 0, 1]]
    assert lab["row"] == [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    assert lab["rank"] == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_haar_channels_independent_and_nonsquare():
    basis = Haar((2, 4, 8), levels=1)
    x = torch.randn(1, 2, 4, 8, generator=_gen(), dtype=torch.float64)
    c = basis.to_coeffs(x)
    torch.testing.assert_close(c[:, 1:], basis.to_coeffs(torch.cat([x[:, 1:], x[:, :1]], 1))[:, :1])
    # LL is the 2×2 block sum / 2; LH the difference of left and right columns of each block
    blocks = x[0, 0].reshape(2, 2, 4, 2)  # (i, row in block, j, column in block)
    torch.testing.assert_close(c[0, 0, :2, :4], blocks.sum(dim=(1, 3)) / 2)
    lh = (blocks[:, :, :, 0] - blocks[:, :, :, 1]).sum(dim=1) / 2
    torch.testing.assert_close(c[0, 0, :2, 4:], lh)


def test_pca_diagonalises_colour_averaged_covariance():
    x = _pca_data((3, 4, 4), n=200)
    basis = PCA.fit(x)
    lam, U = basis.eigenvalues, basis.U
    assert torch.all(lam[1:] <= lam[:-1])
    flat = x.mean(dim=1).flatten(1)  # (N, 16) colour-averaged
    centred = flat - flat.mean(dim=0)
    cov = centred.T @ centred / (x.shape[0] - 1)
    torch.testing.assert_close(U.T @ cov @ U, torch.diag(lam))
    torch.testing.assert_close(basis.mean, x.mean(dim=0))
    # variance label: per-channel variance of the centred data's coefficients
    var = basis.to_coeffs(x - basis.mean).var(dim=0)
    torch.testing.assert_close(basis.labels()["variance"], var)
    assert basis.scale is None
    torch.testing.assert_close(basis.labels()["rank"][1], torch.arange(16).reshape(4, 4))


def test_pca_whitening_scale_and_vector_data():
    x = _pca_data((3, 4, 4), n=100)
    basis = PCA.fit(x, whiten=True)
    torch.testing.assert_close(basis.scale, basis.labels()["variance"].sqrt())
    v = torch.randn(300, 5, generator=_gen(), dtype=torch.float64) * torch.tensor([3.0, 1, 2, .5, .1])
    vb = PCA.fit(v)
    assert vb.event_shape == (5,)
    torch.testing.assert_close(vb.eigenvalues, vb.labels()["variance"])  # no channels: same thing
    torch.testing.assert_close(vb.U.T @ torch.cov(v.T) @ vb.U, torch.diag(vb.eigenvalues))
    assert torch.all(vb.eigenvalues[1:] <= vb.eigenvalues[:-1])


def test_pca_is_deterministic_and_needs_two_examples():
    x = _pca_data((1, 4, 4), n=50)
    assert torch.equal(PCA.fit(x).U, PCA.fit(x.clone()).U)
    with pytest.raises(ValueError, match="at least 2 examples"):
        PCA.fit(x[:1])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_pca_refuses_non_finite_data_and_says_how_much(bad):
    """A NaN in the data would make Σ, U and every coefficient NaN; the error counts them instead."""
    x = _pca_data((1, 4, 4), n=20)
    x[3, 0, 1, 2] = bad
    x[7, 0, 0, 0] = bad
    x[7, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=r"3 non-finite values \(NaN or inf\) in 2 of 20 examples; "
                                         r"remove or impute"):
        PCA.fit(x)
    with pytest.raises(ValueError, match="1 non-finite values"):
        PCA.fit(torch.tensor([[0.0, 1.0], [bad, 2.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="eps .* must be positive and finite"):
        PCA.fit(_pca_data((1, 4, 4), n=20), whiten=True, eps=bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_basis_parameters_are_rejected(bad):
    with pytest.raises(ValueError, match="sigma must be positive and finite"):
        GaussianBlur((1, 4, 4), sigma=bad)
    U = torch.eye(3, dtype=torch.float64)
    U[1, 2] = bad
    with pytest.raises(ValueError, match="matrix has 1 non-finite entries"):
        Orthogonal(U)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_labels_rank_is_a_permutation_per_channel(bases, name, shape):
    basis = bases[shape][name]
    labels = basis.labels()
    assert "rank" in labels and "channel" in labels
    for key, value in labels.items():
        assert value.shape == shape, key
    rank = labels["rank"]
    assert not rank.is_floating_point()
    n = shape[1] * shape[2]
    for c in range(shape[0]):
        assert torch.equal(rank[c].flatten().sort().values, torch.arange(n))
        assert torch.equal(rank[c], rank[0])
        assert torch.all(labels["channel"][c] == c)


def test_pixel_labels():
    lab = Pixel((2, 3, 4)).labels()
    assert lab["rank"][1, 2, 3] == 11 and lab["row"][1, 2, 3] == 2 and lab["column"][1, 2, 3] == 3
    assert torch.equal(Pixel(5).labels()["rank"], torch.arange(5))


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"expects \(3, 8, 8\) per example but got \(3, 4, 4\); build"):
        DCT((3, 8, 8)).to_coeffs(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expects \(3, 8, 8\) per example but got \(8, 8\)"):
        Haar((3, 8, 8), 1).from_coeffs(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="floating-point"):
        Fourier((1, 4, 4)).to_coeffs(torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape=\(C, H, W\)"):
        DCT((8, 8))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"3 levels needs H and W divisible by 8, got 30×32; crop"):
        Haar((3, 30, 32), levels=3)
    with pytest.raises(ValueError, match="levels ≥ 1"):
        Haar((3, 8, 8), levels=0)
    with pytest.raises(ValueError, match=r"unknown basis 'wavelet'; known bases: .*dct.*haar"):
        make_basis("wavelet", (3, 8, 8))
    with pytest.raises(ValueError, match="not orthogonal.*orthonormalise"):
        Orthogonal(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        Orthogonal(torch.ones(2, 3))
    with pytest.raises(ValueError, match="sigma must be positive"):
        GaussianBlur((1, 4, 4), sigma=0.0)
    with pytest.raises(ValueError, match="needs data="):
        make_basis("pca", (1, 4, 4))


def test_make_basis_registry():
    shape = (1, 4, 4)
    assert isinstance(make_basis("pixel", shape), Pixel)
    assert isinstance(make_basis("dct", shape), DCT)
    assert make_basis("blur", shape, sigma=2.0).sigma == 2.0
    assert isinstance(make_basis("fourier", shape), Fourier)
    assert make_basis("haar", shape, levels=2).levels == 2
    pca = make_basis("pca", shape, data=_pca_data(shape), whiten=True)
    assert isinstance(pca, PCA) and pca.scale is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(bases, name):
    basis = bases[(3, 8, 8)][name]
    gpu = _bases((3, 8, 8))[name].to("cuda")
    x = torch.randn(4, 3, 8, 8, generator=_gen())
    c = gpu.to_coeffs(x.cuda())
    assert c.device.type == "cuda" and c.dtype == torch.float32
    torch.testing.assert_close(c.cpu(), basis.to_coeffs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gpu.from_coeffs(c).cpu(), x, atol=1e-5, rtol=1e-5)
    assert all(v.device.type == "cuda" for v in gpu.labels().values())
    assert isinstance(basis, Basis)


def test_dense_bases_keep_one_cast_copy_per_dtype_and_follow_buffer_changes():
    """PCA/Orthogonal cast their float64 U once per dtype and device, and again when U changes."""
    import copy

    from gdmkit.bases import Orthogonal
    from gdmkit.bases.fitted import PCA

    g = torch.Generator().manual_seed(0)
    for basis in (Orthogonal.random(6, generator=g), PCA.fit(torch.randn(50, 6, generator=g))):
        x = torch.randn(3, 6, generator=g)
        c = basis.to_coeffs(x)
        assert basis._matrix_as("U", x) is basis._matrix_as("U", x)  # cached
        assert torch.allclose(c.double(), x.double() @ basis.U, atol=1e-5)
        assert torch.allclose(basis.from_coeffs(c), x, atol=1e-5)
        assert basis.to_coeffs(x.double()).dtype == torch.float64
        other = copy.deepcopy(basis)
        with torch.no_grad():
            other.U.copy_(other.U.flip(1))  # in place: load_state_dict writes buffers like this
        assert torch.allclose(other.to_coeffs(x).double(), x.double() @ basis.U.flip(1), atol=1e-5)
