"""The model zoo: every model at every supported size, spectral norm, conditioning that uses
the labels, the hierarchical latent, and the size rule enforced through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from gandist.config import load_config
from gandist.errors import ConfigError
from gandist.models import ModelSpec, available_models, build_models, model_spec
from gandist.models.sizes import stage_sides

SIZES = [16, 28, 32, 48, 64]


def _build(name: str, spec: ModelSpec):
    """(G, D), or a skip while ``dcgan`` (and ``mlp``, which uses its D) still take only powers
    of two: their any-size rewrite belongs to the other half of issue 11."""
    try:
        return build_models(name, spec)
    except ValueError as e:
        if "power of two" in str(e):
            pytest.skip(f"{name}: any-size dcgan not merged yet ({e})")
        raise


def _cases():
    for name in available_models():
        for size in SIZES + ([128] if name == "biggan" else []):
            for num_classes in (0, 10):
                yield name, size, num_classes


@pytest.mark.parametrize("name, size, num_classes", list(_cases()))
def test_forward_shapes_at_every_size(name, size, num_classes):
    torch.manual_seed(0)
    # biggan: attention at the last-but-one stage, so the attention path is built at every size.
    attention = stage_sides(size)[-2] if name == "biggan" else 0
    spec = ModelSpec(size, 3, num_classes, z_dim=16, g_width=8, d_width=8, attention_resolution=attention)
    g, d = _build(name, spec)
    y = torch.randint(0, 10, (4,)) if num_classes else None
    x = g(torch.randn(4, 16), y)
    assert x.shape == (4, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1
    logits = d(x, y)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    logits.sum().backward()  # every parameter of D takes part in the logit
    assert all(p.grad is not None for p in d.parameters())


# Spectral norm ---------------------------------------------------------------------------------


def _sn_modules(net: torch.nn.Module):
    return [m for m in net.modules() if parametrize.is_parametrized(m, "weight")]


def _matrix(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1) if w.dim() > 1 else w[None]


def test_power_iteration_finds_the_largest_singular_value():
    from gandist.models.blocks import add_spectral_norm

    torch.manual_seed(0)
    conv = add_spectral_norm(torch.nn.Conv2d(8, 16, 3))
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(10.0)  # sigma far from 1
    x = torch.randn(2, 8, 5, 5)
    for _ in range(50):  # one power iteration per training forward
        conv(x)
    original = _matrix(conv.parametrizations.weight.original.detach())
    sigma_true = torch.linalg.svdvals(original)[0]
    u, v = conv.parametrizations.weight[0]._u, conv.parametrizations.weight[0]._v
    sigma_power = torch.dot(u, original @ v)
    assert sigma_true > 5
    assert sigma_power == pytest.approx(sigma_true.item(), rel=1e-3)
    # The weight the layer uses has its largest singular value at 1.
    assert torch.linalg.svdvals(_matrix(conv.weight.detach()))[0] == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("name", ["resnet", "biggan", "r3", "dcgan", "mlp"])
def test_spectral_norm_bounds_every_d_layer(name):
    torch.manual_seed(0)
    spec = ModelSpec(16, 3, 10, z_dim=16, g_width=8, d_width=16, d_spectral_norm=True,
                     attention_resolution=8 if name == "biggan" else 0)
    _, d = build_models(name, spec)
    modules = _sn_modules(d)
    weighted = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
    assert len(modules) >= 4 and len(modules) == len(weighted), "spectral norm should wrap every conv/linear/embedding of D"
    # From the first step on, not only after the power iterations have caught up: the
    # estimate must belong to the initialised weights (spectral norm applied after the init).
    d.eval()
    for m in modules:
        top = torch.linalg.svdvals(_matrix(m.weight.detach()))[0].item()
        assert top <= 1.2, f"{name}: {type(m).__name__} starts with largest singular value {top:.2f}"
    d.train()
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2,))
    with torch.no_grad():
        for _ in range(200):  # one power iteration per training forward: let them converge
            d(x, y)
    for m in modules:
        top = torch.linalg.svdvals(_matrix(m.weight.detach()))[0].item()
        assert top <= 1.0 + 2e-2, f"{name}: {type(m).__name__} has largest singular value {top:.3f}"
        assert top >= 0.9


@pytest.mark.parametrize("name, default", [("resnet", True), ("biggan", True), ("r3", False), ("dcgan", False), ("mlp", False)])
def test_spectral_norm_d_default_and_override(name, default):
    spec = dict(image_size=16, channels=1, num_classes=0, z_dim=16, g_width=8, d_width=8)
    _, d = build_models(name, ModelSpec(**spec))
    assert bool(_sn_modules(d)) == default
    _, d = build_models(name, ModelSpec(**spec, d_spectral_norm=not default))
    assert bool(_sn_modules(d)) == (not default)


# Conditioning ----------------------------------------------------------------------------------


def test_class_conditional_batchnorm_uses_the_label():
    from gandist.models.blocks import ClassConditionalBatchNorm2d

    torch.manual_seed(0)
    bn = ClassConditionalBatchNorm2d(4, num_classes=3).eval()
    x = torch.randn(2, 4, 3, 3)
    a, b = bn(x, torch.tensor([0, 1])), bn(x, torch.tensor([0, 2]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with torch.no_grad():
        bn.gain.weight[2] = 2.0
        bn.bias.weight[2] = 0.5
    out = bn(x, torch.tensor([2, 2]))
    assert torch.allclose(out, bn.bn(x) * 2.0 + 0.5)


def test_vector_conditional_batchnorm_uses_the_vector():
    from gandist.models.blocks import VectorConditionalBatchNorm2d

    torch.manual_seed(0)
    bn = VectorConditionalBatchNorm2d(4, cond_dim=6).eval()
    x, c = torch.randn(2, 4, 3, 3), torch.randn(2, 6)
    zero = bn(x, torch.zeros(2, 6))
    assert torch.allclose(zero, bn.bn(x))  # gain 1 + 0, bias 0
    c2 = c.clone()
    c2[1, 0] += 1.0
    a, b = bn(x, c), bn(x, c2)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


@pytest.mark.parametrize("name", ["resnet", "biggan", "r3"])
def test_generator_and_projection_discriminator_use_the_label(name):
    torch.manual_seed(0)
    g, d = build_models(name, ModelSpec(32, 3, 10, z_dim=16, g_width=8, d_width=8))
    g.eval(), d.eval()
    z = torch.randn(2, 16)
    a, b = g(z, torch.tensor([3, 3])), g(z, torch.tensor([3, 7]))
    assert torch.allclose(a[0], b[0], atol=1e-6), "sample 0 kept its label: its image must not change"
    assert not torch.allclose(a[1], b[1]), "changing the label must change the image"
    x = torch.randn(2, 3, 32, 32)
    la, lb = d(x, torch.tensor([3, 3])), d(x, torch.tensor([3, 7]))
    assert torch.allclose(la[0], lb[0], atol=1e-5) and not torch.allclose(la[1], lb[1])


def test_biggan_hierarchical_latent_feeds_every_stage():
    from gandist.models.biggan import Generator

    torch.manual_seed(0)
    g = Generator(32, 3, z_dim=20, width=8, num_classes=10).eval()  # 32 = 4 * 2^3: 4 chunks of 5
    assert g.num_chunks == 4
    z, y = torch.randn(1, 20), torch.tensor([1])
    base = g(z, y)
    for chunk in range(4):
        z2 = z.clone()
        z2[0, chunk * 5] += 1.0
        assert not torch.allclose(g(z2, y), base), f"chunk {chunk} of z has no effect"
    # Each block's BatchNorm gains see exactly its chunk plus the shared class embedding.
    for block in g.blocks:
        assert block.norm1.gain.parametrizations.weight.original.shape[1] == 5 + 128
    assert not parametrize.is_parametrized(g.shared, "weight")  # BigGAN's shared embedding is plain
    # The shared embedding is one table for all blocks: changing it changes the image.
    with torch.no_grad():
        g.shared.weight[1] += 0.5
    assert not torch.allclose(g(z, y), base)


def test_biggan_attention_starts_as_identity_and_is_placed_by_resolution():
    from gandist.models.biggan import Discriminator, Generator
    from gandist.models.blocks import SelfAttention

    g = Generator(32, 3, z_dim=16, width=16, num_classes=0, attention_resolution=16)
    assert list(g.attention) == ["16"]
    d = Discriminator(32, 3, width=16, attention_resolution=16)
    assert sum(isinstance(m, SelfAttention) for m in d.modules()) == 1
    layer = SelfAttention(16)
    x = torch.randn(2, 16, 7, 7)  # odd side: keys and values pool to 3x3
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.gamma.fill_(1.0)
    assert not torch.allclose(layer(x), x)


def test_r3_blocks_start_as_identity():
    from gandist.models.r3 import ResidualBlock

    block = ResidualBlock(16, num_blocks_total=8)
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(block(x), x)  # the last conv of each block starts at zero
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm))
                   for name in ("r3",) for net in build_models(name, ModelSpec(32, 3, 10, 16, 16, 16)) for m in net.modules())


# Size rule through the CLI ---------------------------------------------------------------------


def test_unsupported_size_exits_2_at_dry_run(run):
    proc = run("train", "--dry-run", "model.name=resnet", "data.image_size=36")
    assert proc.returncode == 2, proc.stderr
    assert "data.image_size" in proc.stderr and "'resnet'" in proc.stderr and "28" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run("train", "--dry-run", "model.name=biggan", "data.image_size=32", "model.attention_resolution=12")
    assert proc.returncode == 2 and "model.attention_resolution" in proc.stderr and "16" in proc.stderr
    proc = run("train", "--dry-run", "model.name=r3", "data.image_size=28")
    assert proc.returncode == 0, proc.stderr


def _write_arrays(root, size: int, num: int = 40, num_classes: int = 4, channels: int = 1):
    from gandist.data import write_shards

    rng = np.random.default_rng(size)
    samples = []
    for i in range(num):
        label = i % num_classes
        img = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
        img[: size // 2] += np.uint8(40 * label)  # something class-dependent to learn
        samples.append((f"{i:06d}", img, label))
    write_shards(samples, root, class_names=[f"c{c}" for c in range(num_classes)], fmt="blocks", block_size=16)
    return root


def test_size_from_the_data_is_refused_at_start(run, tmp_path):
    data = _write_arrays(tmp_path / "d36", 36)
    proc = run("train", "--run-dir", tmp_path / "run", f"data.path={data}", "model.name=resnet", "train.steps=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "36x36" in proc.stderr and "data.image_size" in proc.stderr and "'resnet'" in proc.stderr


@pytest.fixture(scope="module")
def odd_size_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo-data")
    return {size: _write_arrays(root / f"d{size}", size) for size in (28, 48)}


@pytest.mark.slow
@pytest.mark.parametrize("size", [28, 48])
@pytest.mark.parametrize("name", available_models())
def test_every_model_trains_on_28_and_48_pixel_data(name, size, odd_size_data, run, tmp_path):
    _build(name, ModelSpec(size, 1, 4, 8, 8, 8))  # skips while dcgan is powers of two only
    run_dir = tmp_path / "run"
    extra = ["model.attention_resolution=" + str(size // 2)] if name == "biggan" else []
    proc = run("train", "--run-dir", run_dir, f"data.path={odd_size_data[size]}", f"model.name={name}",
               "train.steps=2", "train.batch_size=8", "model.z_dim=8", "model.g_width=8", "model.d_width=8",
               "log.progress=false", "log.every_steps=1", "log.sample_every_steps=0", "log.num_grid_images=8",
               "checkpoint.every_steps=2", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert f"1x{size}x{size}" in out  # trained at the data's own size, no data.image_size
    sample = tmp_path / "grid.png"
    proc = run("sample", "--run-dir", run_dir, "--n", "8", "--out", sample)
    assert proc.returncode == 0 and sample.is_file(), proc.stderr[-2000:]
    if name == "biggan" and size == 28:  # spectral norm in G: its parametrized weights export too
        exported = tmp_path / "g.safetensors"
        assert run("export", "--run-dir", run_dir, "--out", exported).returncode == 0
        proc = run("sample", "--generator", exported, "--n", "8", "--out", tmp_path / "grid2.png")
        assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("name", ["resnet", "biggan", "r3"])
def test_no_zero_dim_parameters(name):
    """DeepSpeed broadcasts parameters as byte views at initialisation, which torch refuses for
    0-dim tensors ("self.dim() cannot be 0 to view Float as Byte"): every parameter needs a dim."""
    spec = ModelSpec(32, 3, 10, z_dim=16, g_width=8, d_width=8, attention_resolution=16 if name == "biggan" else 0)
    for net in build_models(name, spec):
        assert all(p.dim() >= 1 for p in net.parameters())


class _Info:
    """The fields of a DatasetInfo that ``model_spec`` reads."""

    num_classes, image_size, channels, manifest_path, num_samples = 10, 32, 3, "manifest.json", 100


@pytest.mark.parametrize("name, default", [("resnet", True), ("biggan", True), ("r3", False), ("dcgan", False), ("mlp", False)])
def test_spectral_norm_d_config_resolves_per_model(name, default):
    cfg = load_config(None, [f"model.name={name}"]).validate()
    assert model_spec(cfg, _Info()).d_spectral_norm is default
    flipped = load_config(None, [f"model.name={name}", f"model.spectral_norm_d={'off' if default else 'on'}"]).validate()
    assert model_spec(flipped, _Info()).d_spectral_norm is (not default)


def test_model_options_a_model_lacks_are_refused():
    assert load_config(None, ["model.spectral_norm_d=true"]).model.spectral_norm_d == "on"  # YAML booleans accepted
    with pytest.raises(ConfigError, match="model.attention_resolution"):
        load_config(None, ["model.name=resnet", "model.attention_resolution=16"]).validate()


def test_dcgan_d_with_spectral_norm_is_sngan_standard_cnn():
    """SN replaces BatchNorm in D: a BatchNorm after a normalised conv would rescale its output
    by batch statistics and undo the bound."""
    spec = ModelSpec(32, 3, 10, z_dim=16, g_width=8, d_width=16)
    _, plain = build_models("dcgan", spec)
    _, sn = build_models("dcgan", ModelSpec(**{**spec.to_dict(), "d_spectral_norm": True}))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sn.modules())
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    assert sn(x, y).shape == (4,)


def test_model_json_of_older_checkpoints_still_loads():
    old = {"image_size": 16, "channels": 1, "num_classes": 10, "z_dim": 8, "g_width": 8, "d_width": 8, "d_minibatch_std": True}
    spec = ModelSpec(**old)
    assert spec.d_spectral_norm is None and spec.attention_resolution == 0
    g, _ = build_models("dcgan", spec)
    assert g(torch.randn(2, 8), torch.tensor([0, 1])).shape == (2, 1, 16, 16)


def test_biggan_generator_starts_with_normalised_weights():
    from gandist.models.biggan import Generator

    g = Generator(32, 3, z_dim=16, width=16, num_classes=10, attention_resolution=16).eval()
    modules = _sn_modules(g)
    assert len(modules) >= 10  # every conv and linear of G, as in BigGAN
    tops = [torch.linalg.svdvals(_matrix(m.weight.detach()))[0].item() for m in modules]
    assert max(tops) <= 1.2, max(tops)
