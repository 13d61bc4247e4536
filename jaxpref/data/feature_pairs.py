"""Preference pools of feature differences with a known ground truth: the instances of ADPO's
§6.1 logit-error experiment (Kveton et al., "Active Learning for Direct Preference
Optimization", arXiv 2503.01076, §6.1; the protocol as written down in ``theory/adpo.md`` §6).

1. ``class_points``: embedded points with class labels (a synthetic Gaussian mixture, or
   scikit-learn's bundled 8×8 digits by PCA, or those digits through a random network's last
   hidden layer);
2. ``difference_vectors``: φ_i = z_pos − z_neg for a random class, one member and one
   non-member, rescaled to max_i ‖φ_i‖ = 1 (the feature half of Assumption 2);
3. ``logged_feedback_pool``: labels, reference log-ratios and the target θ* on those φ.

And the §6.2 pools from a language model's features: ``pair_design_matrix`` (φ_i = (f_w − f_l)P
rescaled to max norm 1), ``scaled_offsets`` (b_i from the reference log-probs),
``gaussian_projection`` and ``feature_projection`` (a P); ``jaxpref.train.feature_pool``
builds such a pool from one pass of a model over the pairs.

Everything is drawn from a ``numpy.random.Generator``, so one seed fixes a pool; with
``jax.enable_x64`` and float64 φ the fits run in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import _checks, linalg
from jaxpref.losses.mle import fit_dpo_mle

SOURCES = ("synthetic", "digits", "digits_neural")
"""The point sources of ``class_points``."""


def class_points(source: str, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(points (M, dim), class labels (M,)) of a feature source in ``SOURCES``.

    ``"synthetic"``: ten Gaussian classes of 300 points in a space with a decaying spectrum
    (axis k scaled by 1/k), class means N(0, diag(1/k²)) and within-class noise 0.5/k, so some
    directions are rare and the choice of pairs matters, as with real embeddings (drawn from
    ``rng``). ``"digits"``: scikit-learn's bundled digits (1,797 images, standardised per pixel)
    projected on their first ``dim`` principal components, a stand-in for the paper's CIFAR
    ResNet-50 embeddings (which need a download). ``"digits_neural"``: the same standardised
    digits through the last hidden layer (width ``dim``) of a fixed random
    ``jaxpref.policies.neural.MLPPolicy`` (seed 0): ADPO's last-layer linearisation of a
    network (§4). The digits sources do not use ``rng``.

    References: Kveton et al., arXiv 2503.01076, §6.1 (embedded classes); ``theory/adpo.md`` §6.
    """
    if source not in SOURCES:
        raise ValueError(f"source: unknown feature source {source!r}; known: {SOURCES}")
    _checks.check_int_in("dim", dim, 1, 64 if source == "digits" else 10**6)  # PCA: ≤ 64 pixels
    if source == "synthetic":
        classes, per_class = 10, 300
        scale = 1.0 / np.arange(1, dim + 1)
        means = rng.normal(size=(classes, dim)) * scale
        labels = np.repeat(np.arange(classes), per_class)
        return means[labels] + 0.5 * scale * rng.normal(size=(labels.size, dim)), labels
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    digits = load_digits()
    x = (digits.data - digits.data.mean(0)) / (digits.data.std(0) + 1e-6)
    if source == "digits":
        return PCA(n_components=dim, random_state=0).fit_transform(x), digits.target
    from flax import nnx

    from jaxpref.policies.neural import MLPPolicy, last_layer_features

    model = MLPPolicy(x.shape[1], (64, dim), rngs=nnx.Rngs(0))
    return np.asarray(last_layer_features(model, jnp.asarray(x, jnp.float32))), digits.target


def difference_vectors(
    points: np.ndarray, labels: np.ndarray, num_pairs: int, rng: np.random.Generator
) -> np.ndarray:
    """(num_pairs, d) φ_i = (z_pos − z_neg) / c: for each i a class k uniform over the classes,
    z_pos a uniform member of k, z_neg a uniform point of another class; c = max_i ‖z_pos −
    z_neg‖, so that max_i ‖φ_i‖ = 1 (Assumption 2's ‖φ‖ ≤ 1).

    References: Kveton et al., arXiv 2503.01076, §6.1 (pairs) and Assumption 2.
    """
    m, _ = _checks.check_ndim("points", points, 2)
    if _checks.shape_of("labels", labels) != (m,):
        raise ValueError(f"labels: expected shape ({m},) to match points, got {np.shape(labels)}")
    classes = np.unique(labels)
    if classes.size < 2:
        raise ValueError(f"labels: need at least 2 classes, got {classes.size}")
    _checks.check_int_in("num_pairs", num_pairs, 1, 10**9)
    c = rng.choice(classes, size=num_pairs)
    by_class = {k: np.flatnonzero(labels == k) for k in classes}
    others = {k: np.flatnonzero(labels != k) for k in classes}
    pos = np.array([rng.choice(by_class[k]) for k in c])
    neg = np.array([rng.choice(others[k]) for k in c])
    phi = points[pos] - points[neg]
    top = np.linalg.norm(phi, axis=1).max()
    if not np.isfinite(top) or top == 0:
        raise ValueError("points: every drawn pair has identical points (or a non-finite one)")
    return phi / top


class LoggedFeedbackPool(NamedTuple):
    labels: np.ndarray  # (N,)  s_i ~ Ber(μ(φ_iᵀθ̄))
    ref_logratio: np.ndarray  # (N,)  b_i = φ_iᵀθ₀
    theta_star: np.ndarray  # (d,)  the DPO MLE on all N labels: the target of every θ̂_n
    theta_ref: np.ndarray  # (d,)  θ₀ ~ N(θ̄, Σ̄), the reference policy's parameter


def logged_feedback_pool(
    phi_diff: np.ndarray, rng: np.random.Generator, *, beta=1.0, gamma=1.0
) -> LoggedFeedbackPool:
    r"""Labels, reference log-ratios and θ* on fixed pairs by the §6.1 protocol.

    θ̄ is the ridge logistic regression of all-ones labels on φ (``fit_dpo_mle`` with β = 1,
    b = 0) and Σ̄ = (∇²L(θ̄) + γI)⁻¹ its covariance; then s_i ~ Ber(μ(φ_iᵀθ̄)), θ₀ ~ N(θ̄, Σ̄),
    b_i = φ_iᵀθ₀, and θ* = argmin_θ L_DPO(θ; all N) + (γ/2)‖θ‖² with ``beta`` and these b (Eq. 4).
    Draws from ``rng`` in the order θ₀, then s.

    Args:
      phi_diff: (N, d) the pairs (e.g. ``difference_vectors``).
      rng: the generator of θ₀ and s.
      beta, gamma: > 0, the DPO β of θ* and the ridge γ of both fits.

    References: Kveton et al., arXiv 2503.01076, §6.1; ``theory/adpo.md`` §6.
    """
    N, d = _checks.check_ndim("phi_diff", phi_diff, 2)
    _checks.check_finite("phi_diff", phi_diff)
    _checks.check_positive("beta", beta)
    _checks.check_positive("gamma", gamma)
    bar = fit_dpo_mle(phi_diff, np.ones(N), beta=1.0, gamma=gamma)
    cov = linalg.psd_inverse(bar.hessian + gamma * jnp.eye(d))
    theta_0 = rng.multivariate_normal(np.asarray(bar.theta), np.asarray(cov))
    p = jax.nn.sigmoid(phi_diff @ np.asarray(bar.theta))
    labels = (rng.random(N) < p).astype(np.float64)
    b = phi_diff @ theta_0
    star = fit_dpo_mle(phi_diff, labels, beta=beta, gamma=gamma, ref_logratio=b)
    return LoggedFeedbackPool(labels, b, np.asarray(star.theta), theta_0)


def pair_design_matrix(features_w, features_l, projection=None) -> np.ndarray:
    """(N, d) φ_i = (f_w,i − f_l,i) P / c in float64, c = max_i ‖(f_w,i − f_l,i) P‖, so that
    max_i ‖φ_i‖ = 1 (Assumption 2's ‖φ‖ ≤ 1): the winner's minus the loser's features of each
    pair (e.g. an LLM's last hidden state, ADPO's §6.2), optionally through an (E, d)
    ``projection`` P (None: the identity).

    References: Kveton et al., arXiv 2503.01076, §4 (φ = feature difference), §6.2, Assumption 2.
    """
    n, width = _checks.check_ndim("features_w", features_w, 2)
    if _checks.shape_of("features_l", features_l) != (n, width):
        raise ValueError(
            f"features_l: expected shape {(n, width)} to match features_w, "
            f"got {_checks.shape_of('features_l', features_l)}"
        )
    phi = np.asarray(features_w, np.float64) - np.asarray(features_l, np.float64)
    if projection is not None:
        rows, _ = _checks.check_ndim("projection", projection, 2)
        if rows != width:
            raise ValueError(f"projection: expected {width} rows (the feature width), got {rows}")
        phi = phi @ np.asarray(projection, np.float64)
    top = np.linalg.norm(phi, axis=1).max()
    if not np.isfinite(top) or top == 0:
        raise ValueError("features: every pair has identical winner and loser features")
    return phi / top


OFFSET_SCALES = ("max", "none")
"""How ``scaled_offsets`` scales b: ``"max"`` to max_i |b_i| = 1, ``"none"`` raw."""


def scaled_offsets(logps_w, logps_l, scale: str = "max") -> np.ndarray:
    """(N,) b_i = log π₀(y_w|x_i) − log π₀(y_l|x_i) in float64, divided by max_j |b_j| with
    ``scale="max"`` (Assumption 2's |b_i| ≤ 1: the reference enters as π₀^{1/c}, c = max_j |b_j|,
    a departure from the paper, whose b_i are raw; ``experiments/adpo_llm/README.md`` says why).

    References: Kveton et al., arXiv 2503.01076, Eq. (6) (the bias b_i), Assumption 2.
    """
    if scale not in OFFSET_SCALES:
        raise ValueError(f"offset_scale: unknown {scale!r}; choices: {OFFSET_SCALES}")
    (n,) = _checks.check_ndim("logps_w", logps_w, 1)
    if _checks.shape_of("logps_l", logps_l) != (n,):
        raise ValueError(f"logps_l: expected shape ({n},) to match logps_w")
    b = np.asarray(logps_w, np.float64) - np.asarray(logps_l, np.float64)
    top = np.abs(b).max()
    return b / top if scale == "max" and top > 0 else b


def gaussian_projection(width: int, dim: int, seed: int = 0) -> np.ndarray:
    """(width, dim) i.i.d. N(0, 1/dim) entries from ``numpy.random.default_rng(seed)``: a
    Johnson–Lindenstrauss map, E‖xP‖² = ‖x‖² (to reach the paper's d = 4096 from a narrower
    model, or to shrink d).

    References: Johnson & Lindenstrauss (1984); Kveton et al., arXiv 2503.01076, §6.2 (d).
    """
    _checks.check_int_in("width", width, 1, 10**7)
    _checks.check_int_in("dim", dim, 1, 10**7)
    return np.random.default_rng(seed).normal(size=(width, dim)) / np.sqrt(dim)


def feature_projection(width: int, projection=None, proj_dim: int | None = None, seed: int = 0):
    """The P of ``pair_design_matrix`` for features of width E = ``width``: ``projection`` as given,
    checked to be (E, d), with d = ``proj_dim`` when that is set too; else, with ``proj_dim``,
    ``gaussian_projection(E, proj_dim, seed)``; else None (φ keeps the width E). Cheap, so a
    protocol can refuse a wrong P before it loads or runs a model.
    """
    _checks.check_int_in("width", width, 1, 10**7)
    if projection is None:
        return None if proj_dim is None else gaussian_projection(width, proj_dim, seed)
    shape = np.shape(projection)
    if len(shape) != 2 or shape[0] != width:
        raise ValueError(
            f"projection: expected shape ({width}, d) to match the model's feature width "
            f"{width}, got {shape}"
        )
    if proj_dim is not None and shape[1] != proj_dim:
        raise ValueError(f"projection: has {shape[1]} columns but proj_dim is {proj_dim}")
    return projection


__all__ = [
    "OFFSET_SCALES",
    "SOURCES",
    "LoggedFeedbackPool",
    "class_points",
    "difference_vectors",
    "feature_projection",
    "gaussian_projection",
    "logged_feedback_pool",
    "pair_design_matrix",
    "scaled_offsets",
]
