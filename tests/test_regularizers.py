"""Gradient penalties against finite differences; LeCam and orthogonal regularization by hand."""

import pytest
import torch

from gandist import regularizers as R


def _smooth_d():
    """A small smooth conditional D in float64 (tanh, so second derivatives are not zero)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    embed = torch.nn.Embedding(4, 2 * 3 * 3).double()

    def d(x, y):
        return net(x).squeeze(1) + (embed(y) * x.flatten(1)).sum(1) * 0.1

    return d, list(net.parameters()) + list(embed.parameters())


def _fd_input_grad(d, x, y, eps=1e-6):
    """Central differences of D(x_i) along every input coordinate, image by image."""
    grad = torch.zeros_like(x)
    flat = grad.view(len(x), -1)
    for i in range(len(x)):
        for j in range(flat.shape[1]):
            xp, xm = x.clone(), x.clone()
            xp.view(len(x), -1)[i, j] += eps
            xm.view(len(x), -1)[i, j] -= eps
            flat[i, j] = (d(xp, y)[i] - d(xm, y)[i]) / (2 * eps)
    return grad


X = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
FAKE = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
Y = torch.tensor([0, 3, 1])


@pytest.mark.parametrize("which", ["r1", "r2"])
def test_r1_r2_equal_finite_differences(which):
    d, _ = _smooth_d()
    images = X if which == "r1" else FAKE
    fd = _fd_input_grad(d, images, Y)
    expected = fd.square().sum(dim=(1, 2, 3)).mean()
    got = (R.r1_penalty if which == "r1" else R.r2_penalty)(d, images, Y)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_penalty_equals_finite_differences():
    d, _ = _smooth_d()
    alpha = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    x_hat = alpha.view(-1, 1, 1, 1) * X + (1 - alpha.view(-1, 1, 1, 1)) * FAKE
    fd = _fd_input_grad(d, x_hat, Y)
    expected = ((fd.square().sum(dim=(1, 2, 3)).sqrt() - 1) ** 2).mean()
    assert R.gradient_penalty(d, X, FAKE, Y, alpha).item() == pytest.approx(expected.item(), rel=1e-6)


def test_penalty_gradient_reaches_d_parameters_and_equals_finite_differences():
    """The penalty is folded into D's one backward: its parameter gradient must be right too
    (a second-order derivative that create_graph=True keeps)."""
    d, params = _smooth_d()
    w = params[0]
    R.r1_penalty(d, X, Y).backward()
    analytic = w.grad[1, 4].item()
    eps = 1e-6
    with torch.no_grad():
        w[1, 4] += eps
    plus = R.r1_penalty(d, X, Y).item()
    with torch.no_grad():
        w[1, 4] -= 2 * eps
    minus = R.r1_penalty(d, X, Y).item()
    assert analytic != 0
    assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=1e-5)


def test_penalties_are_fp32_under_bfloat16_forward():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(18, 1)).to(torch.bfloat16)

    def d(x, y):
        return net(x.to(torch.bfloat16)).squeeze(1)

    x = torch.randn(4, 2, 3, 3)
    assert R.r1_penalty(d, x, None).dtype == torch.float32
    assert R.gradient_penalty(d, x, x.flip(0), None, torch.rand(4)).dtype == torch.float32


def test_lecam_by_hand_and_state_roundtrip():
    anchors = R.LeCamAnchors(decay=0.9)
    anchors.update(2.0, -1.0)  # the first update sets the anchors
    assert (anchors.real, anchors.fake) == (2.0, -1.0)
    anchors.update(1.0, 0.0)
    assert anchors.real == pytest.approx(0.9 * 2.0 + 0.1 * 1.0)
    assert anchors.fake == pytest.approx(0.9 * -1.0 + 0.1 * 0.0)
    real, fake = torch.tensor([0.0, -2.0]), torch.tensor([3.0, 1.0])
    # relu(real - a_fake)^2: a_fake = -0.9 -> [0.81, 0]; relu(a_real - fake)^2: a_real = 1.9 -> [0, 0.81]
    assert anchors.penalty(real, fake).item() == pytest.approx(0.81 / 2 + 0.81 / 2, rel=1e-5)
    restored = R.LeCamAnchors()
    restored.load_state_dict(anchors.state_dict())
    assert restored.state_dict() == anchors.state_dict()


def test_orthogonal_penalty_by_hand():
    lin = torch.nn.Linear(3, 2, bias=True)
    emb = torch.nn.Embedding(5, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]]))
    net = torch.nn.ModuleDict({"lin": lin, "emb": emb})
    # W W^T off-diagonal: <w0, w1> = 2, twice (symmetric): 2 * 2^2 = 8; bias and embedding skipped.
    assert R.orthogonal_penalty(net).item() == pytest.approx(8.0)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0]]))
    assert R.orthogonal_penalty(net).item() == 0.0  # orthogonal rows of any norm: no penalty


def test_lazy_regularization_runs_every_k_steps_scaled_by_k():
    """reg.every_steps=4: R1 only at steps 0, 4, ..., weighted gamma/2 * 4 (StyleGAN2's lazy R1)."""
    from gandist.config import RegConfig
    from gandist.engine.process_group import ProcessGroup

    d, _ = _smooth_d()
    reg = R.Regularization(RegConfig(r1_gamma=2.0, every_steps=4), ProcessGroup(), seed=0)
    logits = d(X, Y)
    due = reg.d_terms(d, d, 4, 0, X, Y, FAKE, Y, logits, logits)
    assert due["reg/r1"].item() == pytest.approx(2.0 / 2 * 4 * R.r1_penalty(d, X, Y).item())
    assert reg.d_terms(d, d, 5, 0, X, Y, FAKE, Y, logits, logits) == {}


def test_gp_interpolation_weights_do_not_depend_on_the_split():
    """One draw per global batch, sliced by (rank, micro-batch): 2 micro-batches of 4 see the
    alphas one batch of 8 sees."""
    from gandist.config import RegConfig
    from gandist.engine.process_group import ProcessGroup

    whole = R.Regularization(RegConfig(gp_lambda=1.0), ProcessGroup(), seed=3, grad_accum=1)
    split = R.Regularization(RegConfig(gp_lambda=1.0), ProcessGroup(), seed=3, grad_accum=2)
    device = torch.device("cpu")
    alphas = whole._interpolation_weights(7, 0, 8, device)
    parts = torch.cat([split._interpolation_weights(7, m, 4, device) for m in (0, 1)])
    assert torch.equal(alphas, parts)
    assert not torch.equal(alphas, whole._interpolation_weights(8, 0, 8, device))
