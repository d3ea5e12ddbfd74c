"""Semi-supervised GAN (train.objective=semisup): the labelled subset, the K+1 losses, the
reduction to a supervised classifier, D as a classifier (eval --test, export --classifier)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from gandist.classification.protocols import lowdata_rng, stratified_subset
from gandist.config import DataConfig, load_config
from gandist.data import digits_arrays, read_all, resolve_dataset, write_shards
from gandist.data.builtin import write_builtin
from gandist.errors import ConfigError
from gandist.runtime import resolve_objective_defaults
from gandist.losses import get_loss
from gandist.semisup.labelled import choose, load_images, make_record, scan_labels
from gandist.semisup.objective import (
    SemisupObjective,
    feature_matching_loss,
    real_logit,
    supervised_loss,
    unsupervised_d_loss,
)

SEMISUP = ["train.objective=semisup", "model.conditional=false", "loss.name=feature_matching"]
SMALL = ["model.g_width=8", "model.d_width=8", "train.batch_size=32", "log.progress=false", "log.every_steps=10",
         "log.sample_every_steps=0", "log.num_grid_images=10", "train.ema_start_step=0"]


@pytest.fixture(scope="module")
def digits_train(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits-train")
    write_builtin("digits", out, split="train")
    return out


@pytest.fixture(scope="module")
def digits_test(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits-test")
    write_builtin("digits", out, split="test")
    return out


# The labelled subset ---------------------------------------------------------------------------


def test_subset_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [40, 20, 10, 3])
    a = choose(labels, fraction=0.1, per_class=0, seed=0)
    assert np.bincount(labels[a]).tolist() == [4, 2, 1, 1]  # round(0.1 n), at least one of each class
    assert np.array_equal(a, choose(labels, fraction=0.1, per_class=0, seed=0))
    assert not np.array_equal(a, choose(labels, fraction=0.1, per_class=0, seed=1))
    b = choose(labels, fraction=1.0, per_class=5, seed=3)
    assert np.bincount(labels[b]).tolist() == [5, 5, 5, 3]  # a class with fewer gives all it has
    # The subset is the real subset of gandist classify's low-data protocol with the same seed.
    assert np.array_equal(a, stratified_subset(labels, 0.1, lowdata_rng(0)))


def test_unlabelled_samples_are_never_chosen():
    labels = np.array([-1, 0, -1, 1, 1, 0, -1, 2, 2, 2])
    assert choose(labels, fraction=1.0, per_class=0, seed=0).tolist() == [1, 3, 4, 5, 7, 8, 9]
    assert (labels[choose(labels, fraction=0.5, per_class=0, seed=5)] >= 0).all()
    assert len(choose(np.full(4, -1), fraction=1.0, per_class=0, seed=0)) == 0


def test_record_names_sample_keys_of_the_shards_and_loads_their_images(digits_train):
    cfg = load_config(None, [*SEMISUP, f"data.path={digits_train}", "data.labelled_fraction=0.05", "train.seed=2"])
    info = resolve_dataset(cfg.data)
    record = make_record(info, cfg)
    images, labels = read_all(info)
    expect = stratified_subset(labels, 0.05, lowdata_rng(2))  # the same images lowdata's seed 2 trains on
    assert [s["label"] for s in record["samples"]] == labels[expect].tolist()
    assert record["num_per_class"] == np.bincount(labels[expect], minlength=10).tolist()
    ids, _ = scan_labels(info)
    assert [(s["shard"], s["key"]) for s in record["samples"]] == [ids[i] for i in expect]
    loaded = load_images(info, record, image_size=0, channels=0)
    assert np.array_equal(loaded.images, images[expect]) and np.array_equal(loaded.labels, labels[expect])


def test_shards_where_only_some_samples_carry_a_label(tmp_path):
    x, y = digits_arrays("train")
    # Every third sample keeps its label; the others are unlabelled images.
    samples = ((f"{i:05d}", x[i], int(y[i]) if i % 3 == 0 else None) for i in range(300))
    write_shards(samples, tmp_path / "partial", class_names=[str(c) for c in range(10)], shard_size=64, fmt="png")
    cfg = load_config(None, [*SEMISUP, f"data.path={tmp_path / 'partial'}"])
    info = resolve_dataset(cfg.data)
    record = make_record(info, cfg)
    assert record["dataset"]["num_labelled_in_shards"] == 100
    assert sorted(int(s["key"]) for s in record["samples"]) == list(range(0, 300, 3))  # fraction 1: every labelled one
    assert all(s["label"] == int(y[int(s["key"])]) for s in record["samples"])


def test_block_shards_name_images_within_blocks(tmp_path):
    x, y = digits_arrays("train")
    write_shards(((f"{i:05d}", x[i], int(y[i])) for i in range(200)), tmp_path / "blocks",
                 class_names=[str(c) for c in range(10)], shard_size=100, fmt="blocks", block_size=32)
    cfg = load_config(None, [*SEMISUP, f"data.path={tmp_path / 'blocks'}", "data.labelled_per_class=3"])
    info = resolve_dataset(cfg.data)
    record = make_record(info, cfg)
    assert record["num_per_class"] == [3] * 10 and len({(s["shard"], s["key"]) for s in record["samples"]}) == 30
    loaded = load_images(info, record, image_size=0, channels=0)
    all_images, all_labels = read_all(info)
    ids, _ = scan_labels(info)
    where = [ids.index((s["shard"], s["key"])) for s in record["samples"]]
    assert np.array_equal(loaded.images, all_images[where]) and np.array_equal(loaded.labels, all_labels[where])


def test_config_checks_name_the_field():
    with pytest.raises(ConfigError, match="data.labelled_fraction"):
        load_config(None, ["data.labelled_fraction=0"]).validate()
    with pytest.raises(ConfigError, match="data.labelled_per_class: set either"):
        load_config(None, ["data.labelled_fraction=0.5", "data.labelled_per_class=4"]).validate()
    with pytest.raises(ConfigError, match="loss.name: feature_matching needs train.objective=semisup"):
        load_config(None, ["loss.name=feature_matching"]).validate()
    with pytest.raises(ConfigError, match="model.conditional=false"):
        load_config(None, ["train.objective=semisup", "model.conditional=true"]).validate()
    load_config(None, SEMISUP).validate()


def test_semisup_with_the_defaults_picks_the_generator_it_needs_and_says_so():
    cfg = load_config(None, ["train.objective=semisup"])
    note = resolve_objective_defaults(cfg, {"train.objective"})
    assert not cfg.model.conditional and cfg.loss.name == "feature_matching"
    assert "model.conditional=false" in note and "loss.name=feature_matching" in note
    cfg.validate()
    # What the user set stays: an explicit loss is kept, an explicit conditional G is refused by validate.
    cfg = load_config(None, ["train.objective=semisup", "loss.name=hinge"])
    note = resolve_objective_defaults(cfg, {"train.objective", "loss.name"})
    assert cfg.loss.name == "hinge" and "loss.name" not in note
    cfg = load_config(None, ["train.objective=semisup", "model.conditional=true"])
    resolve_objective_defaults(cfg, {"train.objective", "model.conditional"})
    with pytest.raises(ConfigError, match="model.conditional=false"):
        cfg.validate()
    # The GAN objective is left alone.
    cfg = load_config(None, [])
    assert resolve_objective_defaults(cfg, set()) == "" and cfg.model.conditional


def test_the_semisup_command_a_user_types_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gandist", "train", "--dry-run", "--run-dir", str(tmp_path / "r"),
                             "train.objective=semisup", "data.labelled_per_class=10"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "notice: train.objective=semisup" in result.stdout and "conditional: false" in result.stdout


# The losses --------------------------------------------------------------------------------------


def test_k_plus_one_losses_match_hand_computed_values():
    real = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    fake = torch.tensor([[-1.0, -2.0, 0.5]])
    labels = torch.tensor([1, 2])
    # The "generated" logit is fixed at 0: D(real | x) = Z / (Z + 1), Z = sum_k exp(l_k).
    z_real = [math.exp(1) + math.exp(2) + 1, 3.0]
    z_fake = math.exp(-1) + math.exp(-2) + math.exp(0.5)
    assert real_logit(real).tolist() == pytest.approx([math.log(z) for z in z_real])
    # Supervised: -log p(y | x, y < K+1) = -log(exp(l_y) / Z).
    sup = -(math.log(math.exp(2) / z_real[0]) + math.log(1 / 3)) / 2
    assert supervised_loss(real, labels).item() == pytest.approx(sup)
    # Unsupervised (BCE): -log D(x_real) averaged, plus -log(1 - D(G(z))) averaged.
    d_real = [z / (z + 1) for z in z_real]
    d_fake = z_fake / (z_fake + 1)
    unsup = -(math.log(d_real[0]) + math.log(d_real[1])) / 2 - math.log(1 - d_fake)
    assert unsupervised_d_loss(real, fake, get_loss("nonsaturating")).item() == pytest.approx(unsup)
    # And D's loss on one micro-batch: supervised + weight x unsupervised.
    obj = SemisupObjective(np.zeros((1, 1, 4, 4), np.uint8), np.zeros(1), loss_name="feature_matching",
                           unsupervised_weight=0.5, seed=0, global_batch_size=2)
    logits = torch.cat([real, real, fake])
    loss, stats = obj.d_micro_loss(lambda x: logits, torch.zeros(2), torch.zeros(2), labels, torch.zeros(1))
    assert loss.item() == pytest.approx(sup + 0.5 * unsup)
    assert stats[3].item() == pytest.approx(sum(d_real) / 2) and stats[4].item() == pytest.approx(d_fake)


def test_feature_matching_loss_is_the_squared_distance_of_batch_means():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fake = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 4.0]])
    # means (2, 3) and (1, 2): ((2 - 1)^2 + (3 - 2)^2) / 2 features = 1
    assert feature_matching_loss(real.mean(0), fake.sum(0), 3).item() == pytest.approx(1.0)


def test_labelled_batches_are_a_pure_function_of_the_step_and_split_by_rank():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(4, axis=2).repeat(4, axis=3)
    obj = SemisupObjective(images, np.arange(20) % 10, loss_name="feature_matching", unsupervised_weight=1.0,
                           seed=3, global_batch_size=8, random_crop_pad=1)
    one, labels = obj.labelled_batch(5, 0, rank=0, world_size=1, accum=1)
    assert torch.equal(one, obj.labelled_batch(5, 0, rank=0, world_size=1, accum=1)[0])
    assert not torch.equal(one, obj.labelled_batch(6, 0, rank=0, world_size=1, accum=1)[0])
    parts = [obj.labelled_batch(5, m, rank=r, world_size=2, accum=2) for r in range(2) for m in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), one) and torch.equal(torch.cat([p[1] for p in parts]), labels)
    assert torch.equal(labels, one[:, 0, 0, 0].long() % 10)  # images keep their labels through the augmentation


# End to end through the CLI ----------------------------------------------------------------------


def _load(path):
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_resume_keeps_the_subset_and_equals_the_uninterrupted_run(run, tmp_path, digits_train):
    args = [f"data.path={digits_train}", *SEMISUP, *SMALL, "data.labelled_per_class=2", "data.random_crop_pad=1",
            "checkpoint.every_steps=3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run("train", "--run-dir", straight, "train.steps=6", *args).returncode == 0
    assert run("train", "--run-dir", resumed, "train.steps=3", *args).returncode == 0
    subset = (resumed / "labelled.json").read_text()
    res = run("train", "--run-dir", resumed, "train.steps=6", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (resumed / "labelled.json").read_text() == subset == (straight / "labelled.json").read_text()
    assert json.loads(subset)["num_per_class"] == [2] * 10
    a, b = (_load(d / "ckpt" / "step_00000006" / "model.pt") for d in (straight, resumed))
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k}"
    assert "head.weight" in a["D"]  # the K-class head, not the model's one logit
    # A resume may not change the subset: the error names the field (exit 2).
    res = run("train", "--run-dir", resumed, "train.steps=8", *args[:-2], "data.labelled_per_class=3", "checkpoint.every_steps=3",
              "--allow-config-change")
    assert res.returncode == 2 and "data.labelled_per_class" in res.stderr, res.stderr[-2000:]


@pytest.mark.slow
def test_without_gan_terms_it_is_a_plain_supervised_classifier(run, tmp_path, digits_train, digits_test):
    """labelled_fraction=1 and loss.unsupervised_weight=0: D trains on the labelled images alone
    (G is never updated) and reaches the accuracy of the same network trained by a plain loop."""
    from gandist.classification.training import LabelledImages, accuracy
    from gandist.models import ModelSpec
    from gandist.semisup.model import build_semisup_discriminator

    steps, batch = 150, 32
    d_run = tmp_path / "sup"
    res = run("train", "--run-dir", d_run, f"data.path={digits_train}", *SEMISUP, *SMALL, "model.d_width=16",
              "loss.unsupervised_weight=0", f"train.steps={steps}", "optim.lr_d=1e-3")
    assert res.returncode == 0, res.stderr[-2000:]
    res = run("eval", "--run-dir", d_run, "--test", digits_test)
    assert res.returncode == 0, res.stderr[-2000:]
    acc_run = json.loads((d_run / "eval_classifier.json").read_text())["accuracy"]
    records = [json.loads(line) for line in (d_run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss/G"] == 0 and r["loss/D_unsupervised"] == 0 for r in records)

    # The reference: the same network, Adam(1e-3, betas 0.5/0.999), cross-entropy on random batches.
    x_tr, y_tr = read_all(resolve_dataset(DataConfig(path=str(digits_train))))
    x_te, y_te = read_all(resolve_dataset(DataConfig(path=str(digits_test))))
    accs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_semisup_discriminator("dcgan", ModelSpec(16, 1, 0, 8, 8, 16), 10)
        opt = torch.optim.Adam(net.parameters(), 1e-3, betas=(0.5, 0.999))
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(y_tr), (batch,), generator=gen)
            x = torch.from_numpy(x_tr[idx.numpy()]).float().div(127.5).sub(1)
            loss = supervised_loss(net(x), torch.from_numpy(y_tr[idx.numpy()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        accs.append(accuracy(net.eval(), LabelledImages(x_te, y_te)))
    assert min(accs) > 0.8, accs  # the reference learned (chance: 0.1)
    assert abs(acc_run - np.mean(accs)) < 0.04, (acc_run, accs)


def test_class_head_grid_pool_or_flatten_and_files_without_a_head_load_as_flatten(tmp_path):
    """model.semisup_head: grid (default) averages the trunk's map down to at most 4x4 positions
    (the map itself where it is that small already), pool over all positions, flatten keeps it
    whole; a classifier file or run from before the key existed rebuilds as flatten."""
    from torch import nn

    from gandist.classification.training import load_classifier, save_classifier
    from gandist.model_info import parse_model_info
    from gandist.models import ModelSpec
    from gandist.semisup.model import (
        SemisupDiscriminator,
        build_semisup_discriminator,
        classifier_arch,
        classifier_metadata,
        wrap_discriminator,
    )

    spec = ModelSpec(16, 1, 0, 8, 8, 16)
    x = torch.randn(3, 1, 16, 16)
    grid = build_semisup_discriminator("dcgan", spec, 10).eval()
    pooled = build_semisup_discriminator("dcgan", spec, 10, head="pool").eval()
    flat = build_semisup_discriminator("dcgan", spec, 10, head="flatten").eval()
    pooled.trunk.load_state_dict(grid.trunk.state_dict())
    with torch.no_grad():
        fmap = grid.trunk(x)
        c = fmap.shape[1]
        assert fmap.shape[2:] == (4, 4)
        assert pooled.num_features == c and flat.num_features == grid.num_features == c * 16
        assert torch.allclose(pooled.features(x), fmap.mean(dim=(2, 3)))
        assert torch.equal(grid.features(x), fmap.flatten(1))  # 4x4 already: the map itself
        assert grid(x).shape == pooled(x).shape == flat(x).shape == (3, 10)
        # 28 px: the trunk ends at 7x7; grid reads it averaged to 4x4.
        grid28 = build_semisup_discriminator("dcgan", ModelSpec(28, 1, 0, 8, 8, 16), 10).eval()
        x28 = torch.randn(2, 1, 28, 28)
        fmap28 = grid28.trunk(x28)
        assert fmap28.shape[2:] == (7, 7) and grid28.num_features == fmap28.shape[1] * 4 * 4
        assert torch.allclose(grid28.features(x28), nn.functional.adaptive_avg_pool2d(fmap28, 4).flatten(1))
    assert load_config(None, SEMISUP).model.semisup_head == "grid"
    with pytest.raises(ConfigError, match="model.semisup_head"):
        load_config(None, [*SEMISUP, "model.semisup_head=mean"]).validate()

    # A file exported before the key: no semisup_head in its metadata -> the flatten network.
    meta = classifier_metadata("dcgan", spec, "flatten")
    del meta["semisup_head"]
    old = tmp_path / "old.safetensors"
    save_classifier(flat, old, arch=classifier_arch("dcgan"), channels=1, image_size=16, class_names=[str(i) for i in range(10)],
                    train_source="test", test_accuracy=float("nan"), extra_meta=meta)
    loaded, _ = load_classifier(old)
    assert loaded.head_kind == "flatten"
    with torch.no_grad():
        assert torch.equal(loaded(x), flat(x))

    # A trunk without a feature map cannot be pooled: the error names the key and the way out.
    with pytest.raises(ValueError, match="head=grid needs"):
        SemisupDiscriminator(nn.Flatten(), 10, 16, 1)

    class VectorD(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Flatten()

    with pytest.raises(ConfigError, match="model.semisup_head: .*set model.semisup_head=flatten"):
        wrap_discriminator(VectorD(), "vector", spec, 10)
    info = {"model_name": "dcgan", "spec": spec.to_dict(), "num_classes": 0, "class_names": [],
            "objective": "semisup", "semisup": {"num_classes": 10, "class_names": ["a"] * 10, "head": "mean"}}
    with pytest.raises(Exception, match="semisup.head must be one of grid, pool, flatten"):
        parse_model_info(json.dumps(info), "model.json")


@pytest.mark.slow
def test_discriminator_as_classifier_eval_and_export(run, tmp_path, digits_train, digits_test):
    from gandist.classification.training import LabelledImages, accuracy, load_classifier
    from gandist.metrics.extractors import ClassifierExtractor

    d_run = tmp_path / "run"
    res = run("train", "--run-dir", d_run, f"data.path={digits_train}", *SEMISUP, *SMALL, "data.labelled_fraction=0.1",
              "train.steps=20")
    assert res.returncode == 0, res.stderr[-2000:]
    from gandist.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(d_run, log=lambda _: None)
    assert json.loads((ckpt / "model.json").read_text())["semisup"]["head"] == "grid"  # what export rebuilds
    res = run("eval", "--run-dir", d_run, "--test", digits_test)
    assert res.returncode == 0 and "test accuracy" in res.stdout, res.stderr[-2000:]
    acc = json.loads((d_run / "eval_classifier.json").read_text())["accuracy"]
    out = tmp_path / "d.safetensors"
    res = run("export", "--run-dir", d_run, "--classifier", "--test", digits_test, "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    model, info = load_classifier(out)
    assert info["arch"] == "gan-discriminator:dcgan" and info["num_classes"] == 10
    assert info["test_accuracy"] == pytest.approx(acc, abs=1e-6)
    x_te, y_te = read_all(resolve_dataset(DataConfig(path=str(digits_test))))
    assert accuracy(model, LabelledImages(x_te, y_te)) == pytest.approx(acc)
    # It serves as the evaluation's feature extractor, like classify's domain classifier.
    feats, logits = ClassifierExtractor(out)(torch.from_numpy(x_te[:5]))
    assert feats.shape == (5, model.num_features) and logits.shape == (5, 10)
    # In the low-data study: the "semi-supervised GAN" line at the run's fraction, in JSON, table and plot.
    study = tmp_path / "study"
    res = run("classify", "--train", digits_train, "--test", digits_test, "--protocol", "lowdata", "--real-fraction", "0.1",
              "--seeds", "1", "--steps", "3", "--semisup-run", d_run, "--out", study)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((study / "classify_report.json").read_text())
    line = report["lowdata"]["fraction=0.1/semi-supervised GAN"]
    assert line["accuracies"] == [pytest.approx(acc)] and line["variant"] == "semi-supervised GAN"
    # The labels of the real-only line of the same fraction and seed: the same subset.
    assert line["num_train"] == report["lowdata"]["fraction=0.1/real"]["num_train"] == 143 and line["real_fraction"] == 0.1
    assert "| lowdata | fraction=0.1/semi-supervised GAN | 143 |" in (study / "classify_report.md").read_text()
    assert (study / "classify_report.png").stat().st_size > 0
    res = run("classify", "--train", digits_train, "--test", digits_test, "--protocol", "real", "--semisup-run", d_run, "--out", study)
    assert res.returncode == 2 and "add --protocol lowdata" in res.stderr
    # A run trained with train.objective=gan has no class head: exit 2, naming the flag.
    gan_run = tmp_path / "gan"
    assert run("train", "--run-dir", gan_run, f"data.path={digits_train}", *SMALL, "train.steps=2").returncode == 0
    res = run("eval", "--run-dir", gan_run, "--test", digits_test)
    assert res.returncode == 2 and "not a semi-supervised run" in res.stderr
    res = run("export", "--run-dir", gan_run, "--classifier", "--out", tmp_path / "x.safetensors")
    assert res.returncode == 2 and "not a semi-supervised run" in res.stderr
    res = run("classify", "--train", digits_train, "--test", digits_test, "--protocol", "lowdata", "--semisup-run", gan_run, "--out", study)
    assert res.returncode == 2 and "--semisup-run" in res.stderr


def test_data_without_classes_is_refused_naming_the_objective(tmp_path):
    from gandist.errors import DataError
    from gandist.semisup import setup_semisup

    x, _ = digits_arrays("train")
    write_shards(((f"{i:05d}", x[i], None) for i in range(40)), tmp_path / "unlabelled", class_names=[], shard_size=40, fmt="png")
    cfg = load_config(None, [*SEMISUP, f"data.path={tmp_path / 'unlabelled'}"])
    with pytest.raises(DataError, match="train.objective=semisup: the dataset .* has no classes"):
        setup_semisup(cfg, tmp_path / "run", None, resolve_dataset(cfg.data), None, None, log=print)


# D's accuracy on a validation split over steps (eval.val_path) -----------------------------------


@pytest.mark.slow
def test_validation_curve_is_recorded_plotted_and_in_the_study(run, tmp_path):
    from PIL import Image

    from gandist.classification.training import LabelledImages, accuracy
    from gandist.semisup.classifier import load_discriminator

    fit, val = tmp_path / "fit", tmp_path / "val"
    write_builtin("digits", fit, split="fit")
    write_builtin("digits", val, split="val")
    d_run = tmp_path / "run"
    res = run("train", "--run-dir", d_run, f"data.path={fit}", *SEMISUP, *SMALL, "data.labelled_fraction=0.1",
              "train.steps=25", f"eval.val_path={val}", "eval.val_every_steps=10")
    assert res.returncode == 0, res.stderr[-2000:]
    curve = json.loads((d_run / "val_accuracy.json").read_text())
    assert [p["step"] for p in curve["points"]] == [10, 20, 25]  # every 10 steps and at the last one
    assert curve["val"] == str(val) and curve["num_val"] == 179
    assert curve["best"] == max(curve["points"], key=lambda p: p["accuracy"])
    # The last point is the accuracy of the saved D on the validation split, as eval computes it.
    d, _ = load_discriminator(d_run)
    x_val, y_val = read_all(resolve_dataset(DataConfig(path=str(val))))
    assert curve["points"][-1]["accuracy"] == pytest.approx(accuracy(d, LabelledImages(x_val, y_val)), abs=1e-9)
    logged = [json.loads(line) for line in (d_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval/val_accuracy" in r] == [10, 20, 25]
    with Image.open(d_run / "val_accuracy.png") as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 100

    # The low-data study's report carries each run's curve and plots it as a panel of its own.
    study = tmp_path / "study"
    res = run("classify", "--train", fit, "--test", val, "--protocol", "lowdata", "--real-fraction", "0.1",
              "--seeds", "1", "--steps", "3", "--semisup-run", d_run, "--out", study)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((study / "classify_report.json").read_text())
    assert report["lowdata"]["fraction=0.1/semi-supervised GAN"]["runs"][0]["val_curve"]["points"] == curve["points"]
    with Image.open(study / "classify_report.png") as im:
        assert im.size == (2 * 520, 380)  # the low-data panel and the validation-curve panel

    # The validation split may not be the training shards, and needs a semi-supervised run.
    res = run("train", "--run-dir", tmp_path / "same", f"data.path={fit}", *SEMISUP, *SMALL, "train.steps=2", f"eval.val_path={fit}")
    assert res.returncode == 2 and "eval.val_path" in res.stderr and "training shards" in res.stderr, res.stderr[-2000:]
    with pytest.raises(ConfigError, match="eval.val_path"):
        load_config(None, [f"eval.val_path={val}"]).validate()
