"""Telling adversarial from clean images with a cross-validated classifier on per-image features.

Features that need only the image at hand (the model's confidence, explanation statistics, image
statistics) are compared by the ROC AUC of a classifier trained on some photos and tested on others: a
logistic regression on standardised features, or (``classifier="boosting"``) gradient-boosted trees
(scikit-learn's ``HistGradientBoostingClassifier``), which can use a feature that points one way for some
images and the other way for others.
"""
from __future__ import annotations

import numpy as np

SEED = 0

#: The detectors ``detection_auc`` and ``transfer_detection_auc`` offer.
CLASSIFIERS = ("logistic", "boosting")


def _detector(classifier: str, seed: int):
    """Return an unfitted scikit-learn detector: standardised logistic regression or boosted trees (seeded)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if classifier == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if classifier == "boosting":
        return _OneThread(HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                         random_state=seed))
    raise ValueError(f"classifier must be one of {list(CLASSIFIERS)}, got {classifier!r}.")


class _OneThread:
    """A detector fitted and scored on one OpenMP thread: on a few thousand rows the boosted trees' thread
    start-ups cost more than they save, and on a busy machine many times more (benchmarks/README.md)."""

    def __init__(self, model):
        self.model = model

    def fit(self, features, labels):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            self.model.fit(features, labels)
        return self

    def predict_proba(self, features):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self.model.predict_proba(features)


def logit_confidence(p: np.ndarray, floor: float = 1e-7) -> np.ndarray:
    """Return ``log(p / (1 - p))`` of top-class probabilities, with p clipped to [floor, 1 - floor].

    Raw p saturates: an attacked image at p = 0.99999 and a photo at p = 0.999 differ by 0.001 in p but by 2.3
    in logit(p). The clip is float32's resolution near 1 (a stored p of exactly 1.0 is 1 - 6e-8 or closer), so
    the few saturated images share the largest value instead of an infinite one.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), floor, 1.0 - floor)
    return np.log(p) - np.log1p(-p)


def fast_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the ROC AUC of ``scores`` for binary ``labels`` by the Mann-Whitney rank formula.

    ``AUC = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0)``, with ``R_1`` the sum of the positives' mid-ranks, which
    counts a tied (positive, negative) pair as one half, exactly as ``sklearn.metrics.roc_auc_score``; about
    50 times faster, which is what makes thousands of bootstrap resamples cheap.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels) == 1
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("fast_auc needs both classes among the labels.")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _bootstrap_over_photos(statistic, n: int, n_boot: int, seed: int) -> tuple[float, float]:
    """Return the 95% percentile interval of ``statistic(idx)`` over bootstrap resamples, where ``idx``
    indexes scores laid out clean photos first (photo i at i) and adversarial images after (at i + n).

    Clean and adversarial images are resampled independently (the stratified bootstrap of an AUC): drawing
    a photo's two images together would count a photo drawn k times in k^2 same-photo pairs, and those pairs
    (an image against its own twin) are easier than the rest, which biases the interval upwards."""
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        clean, adversarial = rng.integers(0, n, size=n), rng.integers(0, n, size=n)
        boots.append(statistic(np.concatenate([clean, adversarial + n])))
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def detection_auc(clean: np.ndarray, adversarial: np.ndarray, folds: int = 5, n_boot: int = 2000,
                  seed: int = SEED, classifier: str = "logistic") -> dict:
    """Return the cross-validated ROC AUC of a detector (``CLASSIFIERS``) telling adversarial from clean.

    ``clean`` and ``adversarial``: (photos, features), row i of both from the same photo. Folds are split
    by photo (a photo's clean and adversarial versions are never on both sides), features standardised
    inside each fold. The interval is a stratified bootstrap of the out-of-fold scores (seeded).
    Returns ``auc``, ``ci_low``, ``ci_high``, ``fpr``, ``tpr`` (ROC of the pooled out-of-fold scores) and
    ``tpr_at_5pct`` (the share of adversarial images caught at a 5% false-alarm rate on clean ones), and
    ``scores`` (the out-of-fold scores, clean photos first), for ``auc_difference``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.model_selection import GroupKFold

    _detector(classifier, seed)  # an unknown classifier fails before any work
    clean, adversarial = np.asarray(clean, float), np.asarray(adversarial, float)
    n = len(clean)
    features = np.concatenate([clean, adversarial])
    labels = np.concatenate([np.zeros(n), np.ones(n)])
    groups = np.concatenate([np.arange(n), np.arange(n)])
    scores = np.empty(2 * n)
    order = np.random.default_rng(seed).permutation(n)  # shuffle photos before the group split
    fold_of_photo = np.empty(n, dtype=int)
    fold_of_photo[order] = np.arange(n) % folds
    for train, test in GroupKFold(n_splits=folds).split(features, labels, fold_of_photo[groups]):
        model = _detector(classifier, seed)
        model.fit(features[train], labels[train])
        scores[test] = model.predict_proba(features[test])[:, 1]
    auc = float(roc_auc_score(labels, scores))
    low, high = _bootstrap_over_photos(lambda idx: fast_auc(labels[idx], scores[idx]), n, n_boot, seed)
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auc": auc, "ci_low": low, "ci_high": high, "fpr": fpr, "tpr": tpr,
            "tpr_at_5pct": tpr_at_fpr(fpr, tpr, 0.05), "scores": scores}


__all__ = ["CLASSIFIERS", "detection_auc", "fast_auc", "logit_confidence"]


def high_frequency_energy(x: np.ndarray) -> float:
    """Return the mean squared response of the image to the discrete Laplacian (an image statistic, no model).

    ``mean((4 x_ij - x_i-1,j - x_i+1,j - x_i,j-1 - x_i,j+1)^2)`` over interior pixels and channels: sign noise
    of size eps adds about ``20 eps^2`` to it, so it is the obvious non-explanation baseline for telling an
    FGSM/PGD image from its photo (the detection question must beat it to credit the explanations).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be one image (H, W, C), got shape {x.shape}.")
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.mean(lap ** 2))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, at: float = 0.05) -> float:
    """Return the true-positive rate of a ROC curve at false-positive rate ``at`` (step interpolation).

    The largest TPR whose FPR does not exceed ``at``: what a detector catches when it may raise a false
    alarm on ``at`` of clean images.
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    if not 0.0 <= at <= 1.0:
        raise ValueError(f"at must be in [0, 1], got {at!r}.")
    allowed = fpr <= at
    return float(tpr[allowed].max()) if np.any(allowed) else 0.0


__all__ += ["high_frequency_energy", "tpr_at_fpr"]


def transfer_detection_auc(train_clean: np.ndarray, train_adversarial: np.ndarray, test_clean: np.ndarray,
                           test_adversarial: np.ndarray, n_boot: int = 2000, seed: int = SEED,
                           at_fpr: float = 0.05, classifier: str = "logistic") -> dict:
    """Return the ROC AUC of a detector trained on one attack and tested on another (or another eps).

    All four arrays are (photos, features) with row i from the same photo. The photos are split in two
    halves (seeded): the detector (``classifier``, as for ``detection_auc``) is fitted on the first half's clean
    and ``train_adversarial`` images and scored on the second half's clean and ``test_adversarial`` ones,
    so no photo is on both sides even when the attacks are the same. The interval is a bootstrap over the
    test photos. Returns ``auc``, ``ci_low``, ``ci_high`` and ``tpr`` (true-positive rate at ``at_fpr``).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    arrays = [np.asarray(a, dtype=float).reshape(len(a), -1) for a in
              (train_clean, train_adversarial, test_clean, test_adversarial)]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays) or n < 4:
        raise ValueError(f"all four feature arrays need the same number of photos (4 or more), got "
                         f"{[len(a) for a in arrays]}.")
    if any(not np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("features must be finite (drop the photos with missing features first).")
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[: n // 2], order[n // 2:]
    detector = _detector(classifier, seed)
    detector.fit(np.concatenate([arrays[0][train], arrays[1][train]]),
                 np.concatenate([np.zeros(len(train)), np.ones(len(train))]))
    scores = detector.predict_proba(np.concatenate([arrays[2][test], arrays[3][test]]))[:, 1]
    m = len(test)
    labels = np.concatenate([np.zeros(m), np.ones(m)])
    low, high = _bootstrap_over_photos(lambda idx: fast_auc(labels[idx], scores[idx]), m, n_boot, seed)
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auc": float(roc_auc_score(labels, scores)), "ci_low": low, "ci_high": high,
            "tpr": tpr_at_fpr(fpr, tpr, at_fpr)}


__all__ += ["transfer_detection_auc"]


def auc_difference(first: dict, second: dict, n_boot: int = 2000, seed: int = SEED) -> dict[str, float]:
    """Return ``first["auc"] - second["auc"]`` for two ``detection_auc`` results on the same photos, with a
    paired bootstrap interval (the same resampled photos for both detectors, so their shared luck cancels).

    This is how "what do explanation features add to confidence?" gets an interval rather than two
    overlapping ones. Returns ``difference``, ``ci_low``, ``ci_high``.
    """
    a, b = np.asarray(first["scores"]), np.asarray(second["scores"])
    if a.shape != b.shape or len(a) % 2:
        raise ValueError("the two detection results must come from the same photos (paired scores).")
    n = len(a) // 2
    labels = np.concatenate([np.zeros(n), np.ones(n)])
    low, high = _bootstrap_over_photos(
        lambda idx: fast_auc(labels[idx], a[idx]) - fast_auc(labels[idx], b[idx]), n, n_boot, seed)
    return {"difference": float(first["auc"] - second["auc"]), "ci_low": low, "ci_high": high}


__all__ += ["auc_difference"]
