"""FID / KID / precision-recall / IS math against independent computations."""

import numpy as np
import pytest
import scipy.linalg

from gandist.errors import BadInputError
from gandist.metrics import math as M


def _scipy_fid(a, b):
    # The reference formula of pytorch-fid / TTUR: scipy's general matrix square root of the product.
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    for dim in (4, 16, 64):
        a = rng.normal(size=(500, dim)) @ rng.normal(size=(dim, dim))
        b = rng.normal(loc=0.3, size=(400, dim)) @ rng.normal(size=(dim, dim)) * 0.8
        ours, ref = M.fid(a, b), _scipy_fid(a, b)
        assert ref > 1.0
        assert abs(ours - ref) / ref < 1e-6, (dim, ours, ref)


def test_fid_of_set_with_itself_is_zero():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 32)).astype(np.float32)
    assert abs(M.fid(a, a)) < 1e-6


def test_fid_mean_shift_adds_squared_norm():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 8))
    delta = rng.normal(size=8)
    # Same covariance exactly: the covariance terms cancel and only ||delta||^2 remains.
    assert M.fid(a, a + delta) == pytest.approx(float(delta @ delta), rel=1e-9)
    b = rng.normal(size=(300, 8))
    assert M.fid(a, b + delta) - M.fid(a, b) == pytest.approx(
        float(delta @ delta + 2 * delta @ (b.mean(0) - a.mean(0))), rel=1e-6
    )


def test_kid_is_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1000, 16))
    b = rng.normal(size=(1000, 16))
    mean, std = M.kid(a, b, num_subsets=20, subset_size=500)
    assert abs(mean) < 3 * std / np.sqrt(20) + 1e-3, (mean, std)
    shifted_mean, _ = M.kid(a, b + 0.5, num_subsets=20, subset_size=500)
    assert shifted_mean > 0.05
    assert shifted_mean > 20 * abs(mean)


def test_kid_matches_direct_formula_on_full_sets():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 5)), rng.normal(size=(50, 5)) + 0.2
    k = lambda p, q: (p @ q.T / 5 + 1) ** 3  # noqa: E731
    m = 50
    kxx, kyy = k(x, x), k(y, y)
    expected = (
        (kxx.sum() - np.diag(kxx).sum()) / (m * (m - 1))
        + (kyy.sum() - np.diag(kyy).sum()) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )
    # A subset of all 50 of 50 samples is the whole set, in another order: the same number.
    mean, std = M.kid(x, y, num_subsets=3, subset_size=50)
    assert mean == pytest.approx(expected, rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_too_few_samples_names_numbers():
    a = np.zeros((100, 4))
    with pytest.raises(BadInputError, match=r"kid_subset_size=1000.*got 100 and 100"):
        M.kid(a, a, subset_size=1000)


def test_precision_recall_identical_and_disjoint():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(400, 4))
    p, r = M.precision_recall(a, a.copy(), k=3)
    assert p == 1.0 and r == 1.0
    p, r = M.precision_recall(a, a + 100.0, k=3)
    assert p == 0.0 and r == 0.0
    # Mode collapse: fakes concentrated at one real mode -> high precision, low recall.
    collapsed = a[:20] + rng.normal(scale=1e-3, size=(20, 4))
    p, r = M.precision_recall(a, np.repeat(collapsed, 20, axis=0), k=3)
    assert p > 0.9 and r < 0.3


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(60, 3)), rng.normal(loc=0.5, size=(70, 3))
    k = 3
    dist = lambda p, q: np.linalg.norm(p[:, None] - q[None], axis=-1)  # noqa: E731
    r_real = np.sort(dist(real, real), axis=1)[:, k]
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    precision = np.mean([(dist(f[None], real)[0] <= r_real).any() for f in fake])
    recall = np.mean([(dist(x[None], fake)[0] <= r_fake).any() for x in real])
    assert M.precision_recall(real, fake, k=k, batch_size=16) == pytest.approx((precision, recall))


def test_inception_score_bounds():
    # Confident and uniform over K classes -> IS = K; all one class -> IS = 1.
    k = 10
    confident = np.eye(k)[np.arange(1000) % k] * 50.0
    mean, _ = M.inception_score(confident, num_splits=5)
    assert mean == pytest.approx(k, rel=1e-6)
    one_class = np.tile(np.eye(k)[0] * 50.0, (1000, 1))
    assert M.inception_score(one_class, num_splits=5)[0] == pytest.approx(1.0, rel=1e-6)
