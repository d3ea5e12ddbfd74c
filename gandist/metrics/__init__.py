"""Sample-quality metrics: FID, KID, precision/recall, Inception Score, on features of a
domain classifier or Inception-v3, computed on all ranks in parallel.

The training loop calls ``evaluate_generator`` on every rank; ``gandist eval`` does the same
for a finished run.
"""

from gandist.metrics.evaluate import EvalResult, compute_metrics, evaluate_generator
from gandist.metrics.extractors import ClassifierExtractor, FeatureExtractor, InceptionExtractor, build_extractor
from gandist.metrics.math import fid, frechet_distance, inception_score, kid, precision_recall

__all__ = [
    "ClassifierExtractor",
    "EvalResult",
    "FeatureExtractor",
    "InceptionExtractor",
    "build_extractor",
    "compute_metrics",
    "evaluate_generator",
    "fid",
    "frechet_distance",
    "inception_score",
    "kid",
    "precision_recall",
]
