"""The PbPO loop (Jia, arXiv 2511.12867, Alg. 1 as reconstructed) and its baselines.

Episode k: draw x ~ d₀; τ⁰ ~ π_ref^k(·|x) with π_ref^k = π_k (the deployed policy); τ¹ from the
method's exploration rule; label o ~ BTL(θ*); update C_k; π_{k+1} by the method's policy step.
Regret is Σ_k [J(π*) − J(π_k)], J exact by enumeration. Everything is an (init, update) pair over
`PbPOState`, scanned by `run_loop` and vmappable over seeds and environments.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from jaxpref.pbpo import confidence, envs, exploration, minmax

METHODS = ("pbpo", "agnostic_only", "aware_only", "greedy", "uniform", "onpolicy", "optimism")
"""pbpo: τ¹ alternates enhancer / optimistic, pessimistic min-max policy step.
agnostic_only / aware_only: τ¹ always from the enhancer / optimistic rule, same policy step.
greedy: τ¹ = argmax ⟨θ̂, φ⟩, greedy policy (no confidence set, no exploration).
uniform: τ⁰, τ¹ uniform, greedy policy.  onpolicy: τ⁰, τ¹ ~ softmax(⟨θ̂, φ⟩/T) (iterative-DPO
like), greedy policy.  optimism: τ¹ and the policy both from the optimistic index."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Static settings of one loop (hashable: a static argument of jit)."""

    num_episodes: int = 256
    lam: float = 1.0  # ridge λ of Σ_k and of the MLE
    delta: float = 0.1  # confidence level δ
    bound_theta: float = 1.0  # B ≥ ‖θ*‖
    kappa: float | None = None  # None: kappa_btl(B, L)
    num_newton: int = 2  # warm-started Newton steps per episode
    temperature: float = 1.0  # onpolicy sampling temperature


class LoopParams(NamedTuple):
    """Traced settings, so that one compiled loop serves every method and size (vmappable)."""

    method: Array  # ()  int index into METHODS
    dim: Array  # ()  d in the radius (the true dimension when features are zero-padded)
    bound_delta_phi: Array  # ()  L ≥ ‖Δφ‖
    radius_scale: Array  # ()  β used = radius_scale · β_k(δ)


def loop_params(method: str = "pbpo", *, dim, bound_delta_phi=2.0, radius_scale=1.0):
    """`LoopParams` from a method name (checked) and numbers."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    return LoopParams(
        jnp.asarray(METHODS.index(method)),
        jnp.asarray(float(dim)),
        jnp.asarray(float(bound_delta_phi)),
        jnp.asarray(float(radius_scale)),
    )


class PbPOState(NamedTuple):
    conf: confidence.ConfidenceState  # data, Σ_k, θ̂_k
    policy: Array  # (X, Y) π_k(y|x)
    key: Array  # PRNG key


def pbpo_init(key, env: envs.PreferenceEnv, cfg: LoopConfig) -> PbPOState:
    """π_1 uniform, C_0 empty (Σ_0 = λI)."""
    x, y, d = env.features.shape
    dt = env.features.dtype
    conf = confidence.confidence_init(cfg.num_episodes, d, cfg.lam, dt)
    return PbPOState(conf, jnp.full((x, y), 1.0 / y, dt), key)


def _beta(cfg: LoopConfig, prm: LoopParams, k):
    L = prm.bound_delta_phi
    kappa = confidence.kappa_btl(cfg.bound_theta, L) if cfg.kappa is None else cfg.kappa
    r = confidence.radius_unchecked(cfg.delta, prm.dim, k, cfg.lam, cfg.bound_theta, L, kappa)
    return prm.radius_scale * r  # β_k(δ), Eq. (β_k)


def _is(prm: LoopParams, *names):
    return jnp.isin(prm.method, jnp.array([METHODS.index(n) for n in names]))


def _explore(cfg, prm, conf, beta, phi_x, ref, key, k):
    """Indices (y0, y1) of the pair compared in this episode at context features phi_x (Y, d)."""
    k_ref, k_uni, k_on = jax.random.split(key, 3)
    agnostic = jnp.argmax(exploration.enhancer_scores_unchecked(conf.gram, phi_x, ref))
    aware = jnp.argmax(
        exploration.optimistic_scores_unchecked(conf.theta_hat, conf.gram, beta, phi_x, ref)
    )
    logits = phi_x @ conf.theta_hat
    y0 = jax.random.categorical(k_ref, jnp.log(ref))
    y1 = jnp.where(
        _is(prm, "agnostic_only") | (_is(prm, "pbpo") & (k % 2 == 0)),
        agnostic,
        jnp.where(_is(prm, "greedy"), jnp.argmax(logits), aware),
    )
    uni = jax.random.randint(k_uni, (2,), 0, phi_x.shape[0])
    onp = jax.random.categorical(k_on, logits / cfg.temperature, shape=(2,))
    pair = jnp.where(
        _is(prm, "uniform"), uni, jnp.where(_is(prm, "onpolicy"), onp, jnp.stack([y0, y1]))
    )
    return pair[0], pair[1]


def _policy_step(prm, conf, beta, features, policy):
    """π_{k+1} from π_k for every context (features (X, Y, d))."""
    y = features.shape[1]
    greedy = jax.nn.one_hot(jnp.argmax(features @ conf.theta_hat, -1), y, dtype=features.dtype)
    sign = jnp.where(_is(prm, "optimism"), 1.0, -1.0).astype(features.dtype)
    confident = minmax.minmax_responses_unchecked(
        conf.theta_hat, conf.gram, beta, features, policy, sign
    )
    return jnp.where(_is(prm, "greedy", "uniform", "onpolicy"), greedy, confident)


def pbpo_update(state: PbPOState, env: envs.PreferenceEnv, cfg: LoopConfig, prm: LoopParams):
    """One episode; returns (next state, instantaneous regret J(π*) − J(π_k)).

    References: Jia, arXiv 2511.12867, Alg. 1 / Fig. 1 (reconstructed, theory/pbpo.md §8).
    """
    key, kx, k0, ko = jax.random.split(state.key, 4)
    conf = state.conf
    x = jax.random.categorical(kx, jnp.log(env.context_probs))
    phi_x = env.features[x]
    y0, y1 = _explore(
        cfg, prm, conf, _beta(cfg, prm, conf.count), phi_x, state.policy[x], k0, conf.count
    )
    label = envs.btl_label(ko, env.theta_star, phi_x[y1], phi_x[y0])
    conf = confidence.confidence_update(conf, phi_x[y1] - phi_x[y0], label, cfg.num_newton)
    policy = _policy_step(prm, conf, _beta(cfg, prm, conf.count), env.features, state.policy)
    regret = envs.optimal_value(env) - envs.policy_value(env, state.policy)
    return PbPOState(conf, policy, key), regret


@partial(jax.jit, static_argnums=2)
def run_loop(key, env: envs.PreferenceEnv, cfg: LoopConfig, prm: LoopParams) -> Array:
    """Scan `pbpo_update` for cfg.num_episodes; returns the (K,) instantaneous regrets."""

    def body(state, _):
        return pbpo_update(state, env, cfg, prm)

    _, regrets = jax.lax.scan(body, pbpo_init(key, env, cfg), None, length=cfg.num_episodes)
    return regrets


@partial(jax.jit, static_argnums=3)
def run_loops(keys, env: envs.PreferenceEnv, prm: LoopParams, cfg: LoopConfig) -> Array:
    """(B, K) regrets of B independent loops ``run_loop(keys[b], env[b], cfg, prm[b])``: one
    compilation for a batch of environments (of one shape, e.g. ``envs.pad_to_common``) and
    settings, run one after another (``lax.map``: on CPU a serial map is faster than a vmap of
    the batched Cholesky solves).

    References: Jia, arXiv 2511.12867, Alg. 1 (as reconstructed in ``theory/pbpo.md``).
    """
    return jax.lax.map(lambda a: run_loop(a[0], a[1], cfg, a[2]), (keys, env, prm))


def run_settings(
    keys, env_batches: list[envs.PreferenceEnv], params: list[LoopParams], cfg: LoopConfig
) -> Array:
    """(G, S, K) regrets of G settings × S seeds in one compiled `run_loops`: setting g runs
    ``run_loop(keys[s], env_g[s], cfg, params[g])`` for each seed s, where ``env_batches[g]`` is
    a (S,)-stacked batch of environments, every batch `envs.pad_to_common`-ed to the largest Y
    and d (rewards, values and norms unchanged; ``LoopParams.dim`` keeps the true d). Seed s
    uses the same loop key in every setting (common random numbers across settings).

    Args:
      keys: (S,) loop keys (one per seed). env_batches: G stacked batches, each of S
        environments. params: G `LoopParams` (unbatched). cfg: the static `LoopConfig`.

    References: Jia, arXiv 2511.12867, Alg. 1 (as reconstructed in ``theory/pbpo.md``).
    """
    if not env_batches or len(env_batches) != len(params):
        raise ValueError(
            f"env_batches, params: need one batch per setting, got {len(env_batches)} and "
            f"{len(params)}"
        )
    s = len(keys)
    sizes = {e.features.shape[0] for e in env_batches}
    if sizes != {s} or any(e.features.ndim != 4 for e in env_batches):
        raise ValueError(f"env_batches: each must stack {s} environments (one per key)")
    env_b = jax.tree.map(lambda *a: jnp.concatenate(a), *envs.pad_to_common(env_batches))
    prm_b = jax.tree.map(lambda *a: jnp.repeat(jnp.stack(a), s, axis=0), *params)
    all_keys = jnp.concatenate([keys] * len(params))
    return run_loops(all_keys, env_b, prm_b, cfg).reshape(len(params), s, -1)


def radius_scale(radius: str, cfg: LoopConfig, bound_delta_phi=2.0) -> float:
    """The ``LoopParams.radius_scale`` that makes a loop of ``cfg`` (compiled with its κ) use
    the κ of the named radius of ``confidence.RADII`` instead: β_k(δ) is linear in κ, so the
    scale is κ_radius / κ_cfg, both at B = ``cfg.bound_theta`` and L = ``bound_delta_phi``
    (κ_cfg = ``cfg.kappa``, or `kappa_btl(B, L)` when it is None). Lets runs under several
    radii share one compiled `run_settings`.

    Args:
      radius: a name of ``confidence.RADII``. cfg: the `LoopConfig` the loop is compiled with.
      bound_delta_phi: L, the bound on ‖Φ(x, y) − Φ(x, y′)‖ (2 for unit features).
    Returns: the scale, a Python float.

    References: Jia, arXiv 2511.12867 (β_k(δ), as reconstructed in ``theory/pbpo.md``).
    """
    wanted = float(confidence.radius_kappa(radius, cfg.bound_theta, bound_delta_phi))
    base = (
        confidence.kappa_btl(cfg.bound_theta, bound_delta_phi) if cfg.kappa is None else cfg.kappa
    )
    return wanted / float(base)


def run_study(keys, study: dict, cfg: LoopConfig) -> dict:
    """`run_settings` over a labelled study ``{section: {label: (env batch, LoopParams)}}``
    (each env batch (S,)-stacked, one per key), every setting in one compiled map; returns the
    (S, K) instantaneous regrets in the same nesting (seed s shares its loop key across
    settings).

    Args:
      keys: (S,) loop keys. study: ``{section: {label: (env batch, LoopParams)}}``, each env
        batch stacking S environments (`envs.env_batch`). cfg: the shared `LoopConfig`.
    Returns: ``{section: {label: (S, K) regrets}}``.

    References: Jia, arXiv 2511.12867, Alg. 1 (as reconstructed in ``theory/pbpo.md``).
    """
    flat = [(sec, lab, *s) for sec, group in study.items() for lab, s in group.items()]
    regrets = run_settings(keys, [f[2] for f in flat], [f[3] for f in flat], cfg)
    out = {sec: {} for sec in study}
    for (sec, lab, _, _), r in zip(flat, regrets):
        out[sec][lab] = r
    return out


__all__ = [
    "METHODS",
    "LoopConfig",
    "LoopParams",
    "PbPOState",
    "loop_params",
    "pbpo_init",
    "pbpo_update",
    "radius_scale",
    "run_loop",
    "run_loops",
    "run_settings",
    "run_study",
]
