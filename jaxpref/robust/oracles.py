"""The robust-SAIL testbed: its features, preference oracles, the offline-DPO baseline, and
evaluation against the true oracle (all exact on a finite response set).

The setting of ``theory/robust_sail.md`` §1 and §10: the true oracle is Bradley–Terry in a linear
reward r*(x, y) = φ(x, y)ᵀθ*; the learner sees a misspecified oracle P° with |P° − P*| ≤ ρ, so
P* lies in the pointwise uncertainty set U_ρ(P°) of the robust objective. Offline DPO fits the
same pair loss on pairs drawn from π_ref instead of the current policy (no policy-dependent
sampling, the contrast with SAIL's (R2)).

References: Li, Gaur & Aggarwal, "Oracle-Robust Online Alignment for Large Language Models",
  arXiv 2602.20457 (pointwise oracle uncertainty set); Bradley & Terry (1952); Rafailov et al.,
  "Direct Preference Optimization", arXiv 2305.18290, Eq. (7) (offline DPO).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.policies import loglinear
from jaxpref.robust.objective import (
    PreferenceProblem,
    check_theta,
    expectation,
    pair_logits,
    pair_loss,
    preference_problem,
)
from jaxpref.robust.optim import project_ball

SHIFTS = ("verbosity", "adversarial")
"""The misspecified oracles of :func:`shifted_preferences`."""


def verbosity_features(
    key, num_contexts: int, num_responses: int, dim: int, *, noise_scale=0.5, dtype=None
) -> Float[Array, "n K d"]:
    r"""Features of a testbed with a verbosity confounder: φ(x, y) ∈ ℝᵈ for ``num_contexts``
    contexts × ``num_responses`` responses, coordinate 0 a "verbosity" v ~ U[0, 1) and the other
    d − 1 coordinates ``noise_scale`` · N(0, 1), each vector then scaled onto the unit ball,
    φ ← φ / max(‖φ‖, 1) (the bounded-feature assumption ‖φ‖ ≤ 1).

    A true reward that ignores coordinate 0 (θ*₀ = 0) and the ``"verbosity"`` oracle of
    :func:`shifted_preferences` (which favours large φ₀) then disagree exactly through a style
    feature, the confounder the paper names. Draws in ``dtype`` (default: JAX's default float).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457, introduction (oracle shift from "style
      confounders such as verbosity", ``papers/SPEC.md`` §3.2); ``theory/robust_sail.md`` §1
      (‖φ‖ ≤ 1) and §10 (the experiment).
    """
    for name, value, lo in (
        ("num_contexts", num_contexts, 1),
        ("num_responses", num_responses, 1),
        ("dim", dim, 2),
    ):
        _checks.check_int_in(name, value, lo, 10**9)
    _checks.check_positive("noise_scale", noise_scale)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype: expected a floating dtype, got {dtype}")
    k_v, k_z = jax.random.split(key)
    shape = (num_contexts, num_responses)
    verbosity = jax.random.uniform(k_v, (*shape, 1), dtype=dtype)
    rest = jax.random.normal(k_z, (*shape, dim - 1), dtype=dtype)
    phi = jnp.concatenate([verbosity, noise_scale * rest], axis=-1)
    return phi / jnp.maximum(jnp.linalg.norm(phi, axis=-1, keepdims=True), 1.0)


def _check_world(phi, theta_star):
    phi = _checks.as_float("phi", phi)
    if phi.ndim < 2:
        raise ValueError(f"phi: expected shape (..., K, d), got {phi.shape}")
    if _checks.shape_of("theta_star", theta_star) != (phi.shape[-1],):
        raise ValueError(
            f"theta_star: expected shape ({phi.shape[-1]},), got "
            f"{_checks.shape_of('theta_star', theta_star)}"
        )
    _checks.check_all_finite(phi=phi, theta_star=theta_star)
    return phi


def btl_preferences(
    phi: Float[ArrayLike, "... K d"], theta_star: Float[ArrayLike, " d"]
) -> Float[Array, "... K K"]:
    r"""The true (Bradley–Terry) oracle :math:`P^*(y \succ y'|x) = \sigma(r^*_y - r^*_{y'})`,
    r* = φᵀθ*, for every ordered pair of each context.

    References: Bradley & Terry (1952); ``theory/robust_sail.md`` §10 (the true oracle).
    """
    r = _check_world(phi, theta_star) @ theta_star
    return jax.nn.sigmoid(r[..., :, None] - r[..., None, :])


def shifted_preferences(
    phi: Float[ArrayLike, "... K d"],
    theta_star: Float[ArrayLike, " d"],
    rho,
    shift: str,
    *,
    verbosity_index: int = 0,
) -> Float[Array, "... K K"]:
    r"""A misspecified observed oracle P° with |P° − P*| ≤ ρ (so P* ∈ U_ρ(P°)).

    - ``"verbosity"``: P° = clip(P* + ρ tanh(5(v_y − v_{y'})), 0, 1), v = φ[..., verbosity_index]
      (a length-loving annotator: a feature the true reward ignores);
    - ``"adversarial"``: P° = clip(P* + ρ sign(r*_y − r*_{y'}), 0, 1) (over-confident labels);
      then P* is exactly the worst case of U_ρ(P°) for a policy ranking pairs as r* does and no
      clip binding (``theory/robust_sail.md`` §10).

    Both are antisymmetric: P°(y ≻ y') + P°(y' ≻ y) = 1.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (pointwise uncertainty set U_ρ);
      ``theory/robust_sail.md`` §10.
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift: must be one of {SHIFTS}, got {shift!r}")
    _checks.check_in_range("rho", rho, 0.0, 1.0)
    phi = _check_world(phi, theta_star)
    _checks.check_int_in("verbosity_index", verbosity_index, 0, phi.shape[-1] - 1)
    p_true = btl_preferences(phi, theta_star)
    if shift == "verbosity":
        v = phi[..., verbosity_index]
        direction = jnp.tanh(5.0 * (v[..., :, None] - v[..., None, :]))
    else:
        r = phi @ theta_star
        direction = jnp.sign(r[..., :, None] - r[..., None, :])
    return jnp.clip(p_true + rho * direction, 0.0, 1.0)


def _pair_logits_all(theta, problem: PreferenceProblem):
    return jax.vmap(pair_logits, in_axes=(None, 0, 0, None))(
        theta, problem.phi, problem.ref_logp, problem.beta
    )


def offline_dpo_objective(
    theta: Float[ArrayLike, " d"], problem: PreferenceProblem
) -> Float[Array, ""]:
    r"""The population offline-DPO loss: pairs from the fixed reference, not the policy,

    .. math:: L_{\rm DPO}(\theta) = \mathbb E_{x\sim w}\sum_{y,y'}
              \pi_{\rm ref}(y|x)\,\pi_{\rm ref}(y'|x)\,\ell(h_\theta(x,y,y'); P(y\succ y'|x)),

    with ℓ the expected logistic pair loss (R1) and h_θ the DPO logit; (R2) of
    ``theory/robust_sail.md`` with π_θ replaced by π_ref, so the loss is convex in θ.

    References: Rafailov et al., arXiv 2305.18290, Eq. (7) (in expectation over labels and over
      pairs from π_ref); ``theory/robust_sail.md`` §§2–3.
    """
    check_theta(theta, problem)
    return _offline_dpo(theta, problem)


def _offline_dpo(theta, problem):
    ref_probs = jnp.exp(problem.ref_logp)
    loss = pair_loss(_pair_logits_all(theta, problem), problem.pref)
    return jnp.einsum("n,ny,nyz,nz->", problem.weights, ref_probs, loss, ref_probs)


def fit_offline_dpo(
    problem: PreferenceProblem, radius, num_steps: int, step_size=2.0, theta0=None
) -> Float[Array, " d"]:
    """Projected gradient descent on :func:`offline_dpo_objective` over Θ = {‖θ‖ ≤ B}, from
    ``theta0`` (default 0), with a constant step; returns the last iterate.

    References: ``offline_dpo_objective``; projection onto the ball as in ``project_ball``.
    """
    _checks.check_positive("radius", radius)
    _checks.check_positive("step_size", step_size)
    _checks.check_int_in("num_steps", num_steps, 0, 10**9)
    theta0 = jnp.zeros(problem.phi.shape[-1], problem.phi.dtype) if theta0 is None else theta0
    check_theta(theta0, problem)
    grad = jax.grad(_offline_dpo)

    def step(theta, _):
        return project_ball(theta - step_size * grad(theta, problem), radius), None

    return jax.lax.scan(step, jnp.asarray(theta0), None, length=num_steps)[0]


def kl_regularized_value(theta, phi, ref_logp, rewards, beta=1.0) -> Float[Array, ""]:
    r"""The KL-regularised value of the log-linear policy π_θ (uniform contexts),

    .. math:: \mathbb E_x\,\mathbb E_{y\sim\pi_\theta}
              [r(x,y) - \beta\log(\pi_\theta/\pi_{\rm ref})],

    maximised by θ_ref + θ*/β when r = φᵀθ* and π_ref is log-linear with θ_ref.

    References: Rafailov et al., arXiv 2305.18290, Eq. (3) (the KL-regularised objective).
    """
    logp = jax.vmap(loglinear.log_probs, in_axes=(None, 0))(theta, phi)
    p = jnp.exp(logp)
    return jnp.mean(jnp.sum(p * (rewards - beta * (logp - ref_logp)), axis=-1))


def true_oracle_metrics(theta, phi, theta_ref, theta_star, beta=1.0) -> dict:
    """Against the TRUE oracle on contexts ``phi`` (n, K, d): the share of ordered pairs (y ≠ y')
    whose DPO logit has the sign of r*_y − r*_{y'} (``accuracy``), the largest
    |h_θ − (r*_y − r*_{y'})| (``max_logit_error``) and the KL-regularised ``regret`` to the
    optimal log-linear policy θ_ref + θ*/β.

    References: ``theory/robust_sail.md`` §10 (evaluation on held-out contexts); Kveton et al.,
      arXiv 2503.01076, Eq. (6) (logit error).
    """
    phi = _check_world(phi, theta_star)
    (d,) = _checks.check_ndim("theta", theta, 1)
    if _checks.shape_of("theta_ref", theta_ref) != (d,) or d != phi.shape[-1]:
        raise ValueError(f"theta, theta_ref: expected shape ({phi.shape[-1]},)")
    ref_logp = jax.vmap(loglinear.log_probs, in_axes=(None, 0))(theta_ref, phi)
    h = jax.vmap(pair_logits, in_axes=(None, 0, 0, None))(theta, phi, ref_logp, beta)
    r = phi @ theta_star
    true_logit = r[:, :, None] - r[:, None, :]
    off = ~jnp.eye(phi.shape[1], dtype=bool)[None]
    agree = (jnp.sign(h) == jnp.sign(true_logit)) & off
    theta_opt = theta_ref + theta_star / beta
    regret = kl_regularized_value(theta_opt, phi, ref_logp, r, beta) - kl_regularized_value(
        theta, phi, ref_logp, r, beta
    )
    return dict(
        accuracy=jnp.sum(agree) / jnp.sum(off * jnp.ones_like(h)),
        max_logit_error=jnp.max(jnp.abs(h - true_logit)),
        regret=regret,
    )


# ----------------------------------------------------------------------------- the testbed


class VerbosityTestbed(NamedTuple):
    """The robust-SAIL experiment's world (build it with `verbosity_testbed`)."""

    theta_star: Array  # (d,)  true reward θ*, ‖θ*‖ = reward_scale, θ*₀ = 0 (ignores verbosity)
    theta_ref: Array  # (d,)  reference policy π_ref = π_{θ_ref} (log-linear)
    phi_train: Array  # (n, K, d)  features of the training contexts
    phi_test: Array  # (m, K, d)  features of the held-out contexts


def verbosity_testbed(
    key,
    num_contexts: int,
    num_test_contexts: int,
    num_responses: int,
    dim: int,
    *,
    reward_scale=3.0,
    ref_scale=0.3,
    dtype=None,
) -> VerbosityTestbed:
    r"""The world of ``theory/robust_sail.md`` §10: a true reward θ* = B·u/‖u‖ with u ~ N(0, I)
    and u₀ = 0 (so r* = φᵀθ* ignores the verbosity coordinate), a reference θ_ref ~
    ``ref_scale``·N(0, I), and `verbosity_features` of ``num_contexts`` training and
    ``num_test_contexts`` held-out contexts with ``num_responses`` responses each. The KL-optimal
    log-linear policy is θ_ref + θ*/β (`true_oracle_metrics`' regret is measured to it).

    ``key`` is split in four (θ*, θ_ref, training, held-out features); draws in ``dtype``
    (default float64 where enabled, as `verbosity_features`).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (style confounders such as verbosity);
      ``theory/robust_sail.md`` §§1, 10.
    """
    for name, value, lo in (
        ("num_contexts", num_contexts, 1),
        ("num_test_contexts", num_test_contexts, 1),
        ("dim", dim, 2),
    ):
        _checks.check_int_in(name, value, lo, 10**9)
    _checks.check_positive("reward_scale", reward_scale)
    _checks.check_nonnegative("ref_scale", ref_scale)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
    keys = jax.random.split(key, 4)
    direction = jax.random.normal(keys[0], (dim,), dtype=dtype).at[0].set(0.0)
    theta_star = reward_scale * direction / jnp.linalg.norm(direction)
    theta_ref = ref_scale * jax.random.normal(keys[1], (dim,), dtype=dtype)
    feats = lambda k, n: verbosity_features(k, n, num_responses, dim, dtype=dtype)  # noqa: E731
    return VerbosityTestbed(
        theta_star, theta_ref, feats(keys[2], num_contexts), feats(keys[3], num_test_contexts)
    )


def testbed_problem(
    testbed: VerbosityTestbed, pref: Float[ArrayLike, "n K K"], *, beta=1.0
) -> PreferenceProblem:
    r"""The learner's `PreferenceProblem` on the testbed's training contexts: features
    ``phi_train``, reference log-probs log π_{θ_ref}(y|x) = φᵀθ_ref − log Σ_y' exp(φᵀθ_ref),
    uniform contexts, oracle ``pref`` (e.g. P° of `shifted_preferences` or P* of
    `btl_preferences`).

    References: ``theory/robust_sail.md`` §1 (the finite problem), §10 (the experiment).
    """
    ref_logp = jax.vmap(loglinear.log_probs, in_axes=(None, 0))(
        testbed.theta_ref, testbed.phi_train
    )
    return preference_problem(testbed.phi_train, ref_logp, pref, beta=beta)


def testbed_metrics(
    theta: Float[ArrayLike, " d"], testbed: VerbosityTestbed, observed: PreferenceProblem, rho
) -> dict:
    r"""How a learned θ does on the testbed: `true_oracle_metrics` on the held-out contexts
    (``accuracy``, ``max_logit_error``, ``regret``), and on the training contexts the SAIL loss
    under the TRUE oracle, ``true_sail_loss`` = L_SAIL(θ; P*), and the robust objective it was
    trained on, ``robust_objective`` = sup_{P ∈ U_ρ(P°)} L_SAIL(θ; P) (``observed`` holds P°).

    When P* ∈ U_ρ(P°) (any shift of `shifted_preferences` at radius ≤ ρ), true_sail_loss ≤
    robust_objective: the first link of the chain of §10. Arrays of shape () (unchecked beyond
    the metrics' own checks; vmap over a stack of θ for several seeds).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457; ``theory/robust_sail.md`` Eqs. (R2), (R5)
      and §10.
    """
    metrics = true_oracle_metrics(
        theta, testbed.phi_test, testbed.theta_ref, testbed.theta_star, observed.beta
    )
    p_true = btl_preferences(testbed.phi_train, testbed.theta_star)
    true_loss = expectation(theta, observed._replace(pref=p_true), 0.0)  # Eq. (R2) under P*
    robust = expectation(theta, observed, rho)  # Eq. (R5) under P°
    return metrics | dict(true_sail_loss=true_loss, robust_objective=robust)


def bt_set_coverage(true_scores, observed_scores, rhos) -> list[float]:
    r"""How often the pointwise set U_ρ(P°) holds the true preference, on scored pairs: with
    Bradley–Terry preferences P*_i = σ(s*_{i,0} − s*_{i,1}) of the true scores and
    P°_i = σ(s°_{i,0} − s°_{i,1}) of the observed ones, the fraction of pairs i with
    |P*_i − P°_i| ≤ ρ, for each ρ (non-decreasing in ρ; 1 at ρ = 1).

    A host-side summary in the scores' NumPy dtype (σ(z) = 1/(1 + e^{−z})), e.g. for an oracle
    that only a noisy reward model can query; ``theory/robust_sail.md`` §11.

    Args:
      true_scores, observed_scores: (N, 2) finite scores of the two responses of N pairs.
      rhos: radii ρ ∈ [0, 1].
    Returns: one fraction per ρ.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (pointwise uncertainty set U_ρ);
      Bradley & Terry (1952).
    """
    s_true, s_obs = np.asarray(true_scores), np.asarray(observed_scores)
    _checks.check_same_shape(true_scores=s_true, observed_scores=s_obs)
    if s_true.ndim != 2 or s_true.shape[1] != 2 or s_true.shape[0] < 1:
        raise ValueError(f"true_scores: expected shape (N >= 1, 2), got {s_true.shape}")
    _checks.check_all_finite(true_scores=s_true, observed_scores=s_obs)
    for rho in rhos:
        _checks.check_in_range("rhos", rho, 0.0, 1.0)
    sig = lambda s: 1 / (1 + np.exp(-(s[:, 0] - s[:, 1])))  # noqa: E731
    gap = np.abs(sig(s_true) - sig(s_obs))  # |P* − P°| of each pair
    return [float(np.mean(gap <= rho)) for rho in rhos]
