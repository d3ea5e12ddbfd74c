"""Sample-quality statistics of two feature sets: FID, KID, precision/recall, Inception Score.

Pure functions of numpy arrays (N x D features, N x K logits); no models, no ranks. Every
statistic is computed in float64: FID subtracts large traces, and float32 loses the digits
that separate two good generators.
"""

from __future__ import annotations

import numpy as np

from gandist.errors import BadInputError


def feature_stats(features_nd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D) and unbiased covariance (D x D) of the rows, in float64."""
    x = np.asarray(features_nd, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise BadInputError(f"feature statistics need at least 2 samples of a 1-D feature, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """Fréchet distance of N(mu_a, sigma_a) and N(mu_b, sigma_b) (Heusel et al., 2017):
    ||mu_a - mu_b||^2 + tr(sigma_a) + tr(sigma_b) - 2 tr((sigma_a sigma_b)^(1/2)).

    tr((A B)^(1/2)) is taken as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix A^(1/2) B A^(1/2), which has the same spectrum as A B. Two symmetric eigen-decompositions
    are stable where scipy's general ``sqrtm`` of the non-symmetric A B can return complex noise.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    sqrt_a = _psd_sqrt(sigma_a)
    middle = sqrt_a @ sigma_b @ sqrt_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * tr_covmean)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID of two feature sets (rows are samples)."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., 2018): mean and std over random subsets of the
    unbiased MMD^2 estimate with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3.

    Unbiased: the diagonal k(x_i, x_i) terms are left out, so two samples of one distribution
    average to 0 (single subsets can be negative).
    """
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    n_min = min(len(a), len(b))
    if subset_size < 2 or n_min < subset_size:
        raise BadInputError(
            f"KID needs at least metrics.kid_subset_size={subset_size} samples in each set "
            f"(and a subset size >= 2); got {len(a)} and {len(b)}: lower metrics.kid_subset_size "
            f"or raise eval.num_samples"
        )
    if num_subsets < 1:
        raise BadInputError(f"metrics.kid_num_subsets: must be >= 1 (got {num_subsets})")
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    m = subset_size
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        sum_xx = k_xx.sum() - np.trace(k_xx)
        sum_yy = k_yy.sum() - np.trace(k_yy)
        values[i] = (sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.mean()
    return float(values.mean()), float(values.std())


def precision_recall(real_nd: np.ndarray, fake_nd: np.ndarray, *, k: int = 3, batch_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest neighbour in its own set. Precision: fraction of fake samples inside the
    real manifold; recall: fraction of real samples inside the fake manifold.
    """
    real = np.asarray(real_nd, np.float64)
    fake = np.asarray(fake_nd, np.float64)
    if min(len(real), len(fake)) <= k:
        raise BadInputError(
            f"precision/recall with k={k} needs more than {k} samples in each set; got {len(real)} real and {len(fake)} generated"
        )
    radii_real = _kth_neighbour_distance(real, k, batch_size)
    radii_fake = _kth_neighbour_distance(fake, k, batch_size)
    precision = _inside_fraction(fake, real, radii_real, batch_size)
    recall = _inside_fraction(real, fake, radii_fake, batch_size)
    return precision, recall


def inception_score(logits_nk: np.ndarray, *, num_splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over
    ``num_splits`` consecutive splits. Takes logits (any classifier; the number is comparable only
    between runs that use the same network)."""
    logits = np.asarray(logits_nk, np.float64)
    if len(logits) < num_splits:
        raise BadInputError(f"Inception Score with {num_splits} splits needs at least {num_splits} samples, got {len(logits)}")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, num_splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0) + 1e-300)
        kl = (p * (part - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


# Helpers ------------------------------------------------------------------------------------


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    eig, vec = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vec * np.sqrt(np.clip(eig, 0.0, None))) @ vec.T


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.clip(d, 0.0, None)


def _kth_neighbour_distance(x: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    out = np.empty(len(x))
    for start in range(0, len(x), batch_size):
        d = _squared_distances(x[start : start + batch_size], x)
        # Column k of the sorted row: column 0 is the point itself (distance 0).
        out[start : start + batch_size] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return out


def _inside_fraction(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, batch_size: int) -> float:
    inside = 0
    for start in range(0, len(queries), batch_size):
        d = np.sqrt(_squared_distances(queries[start : start + batch_size], centres))
        inside += int((d <= radii[None, :]).any(axis=1).sum())
    return inside / len(queries)
