"""Low-rank adapters (LoRA; Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
arXiv 2106.09685, Eq. 3): a frozen kernel W gains ΔW = (α/r)·A B with A ∈ ℝ^{d_in×r},
B ∈ ℝ^{r×d_out} and B = 0 at initialisation, so the adapted model starts equal to the base.

Adapters are ``LoRAParam`` variables on the targeted :class:`~jaxpref.llm.layers.Linear` layers,
so ``nnx`` filters select them: ``nnx.Optimizer(model, tx, wrt=LoRAParam)`` trains adapters only,
and :func:`without_adapters` gives the base model (the DPO reference) as a view that shares every
base array — no second copy of the weights.
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpref.llm.layers import Linear, LoRAParam
from jaxpref.llm.sharding import path_name

BASE = nnx.All(nnx.Param, nnx.Not(LoRAParam))  # filter: every non-adapter parameter


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Rank r, scale numerator α, and a regex searched in each linear layer's path
    (e.g. ``"layers.0.attn.q_proj"``)."""

    rank: int = 8
    alpha: float = 16.0
    target: str = r"(q|k|v|o|gate|up|down)_proj"

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank: must be ≥ 1, got {self.rank}")


def _targets(model, pattern: str):
    found = [(path_name(p), m) for p, m in nnx.iter_modules(model) if isinstance(m, Linear)]
    chosen = [(n, m) for n, m in found if re.search(pattern, n)]
    if not chosen:
        raise ValueError(
            f"target: pattern {pattern!r} matches no linear layer "
            f"(e.g. {found[0][0] if found else 'none'})"
        )
    return chosen


def apply_lora(model, config: LoRAConfig, *, rngs: nnx.Rngs) -> list[str]:
    """Attach adapters in place to the linear layers matching ``config.target``; returns their
    paths. A ~ N(0, 1/d_in), B = 0. On a ``scan_layers`` model a stacked kernel
    ``(n_layers, d_in, d_out)`` gets stacked factors ``(n_layers, d_in, r)`` and
    ``(n_layers, r, d_out)``, one independent adapter per layer."""
    names = []
    for name, linear in _targets(model, config.target):
        kernel = linear.kernel[...]
        *lead, d_in, d_out = kernel.shape  # lead: (n_layers,) on a scan_layers model
        axes = linear.kernel.get_metadata().get("logical_axes", (None,) * kernel.ndim)
        *lead_axes, in_axis, out_axis = axes
        shape_a, shape_b = (*lead, d_in, config.rank), (*lead, config.rank, d_out)
        a = jax.random.normal(rngs.params(), shape_a, kernel.dtype) / math.sqrt(d_in)
        linear.lora_a = LoRAParam(a, logical_axes=(*lead_axes, in_axis, "lora_rank"))
        linear.lora_b = LoRAParam(
            jnp.zeros(shape_b, kernel.dtype), logical_axes=(*lead_axes, "lora_rank", out_axis)
        )
        linear.lora_scale = config.alpha / config.rank
        linear.lora_merged = False
        names.append(name)
    return names


def perturb_adapters(model, key, *, scale: float) -> None:
    """Add ``scale`` · N(0, 1) noise in place to every adapter factor (A and B) of ``model``,
    one key of ``jax.random.split(key, n)`` per factor in ``nnx.split`` order.

    ``apply_lora`` starts from B = 0, where ΔW = 0 and the gradient with respect to A vanishes;
    a check of LoRA gradients in which every factor moves needs B ≠ 0 first."""
    _, adapters, _ = nnx.split(model, LoRAParam, ...)
    leaves, treedef = jax.tree.flatten(adapters)
    if not leaves:
        raise ValueError("model: has no LoRA adapters to perturb (llm.apply_lora first)")
    keys = jax.random.split(key, len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))


def _adapted(model):
    return [m for _, m in nnx.iter_modules(model) if isinstance(m, Linear) and m.lora_a is not None]


def _delta(linear: Linear):
    return linear.lora_scale * (linear.lora_a[...] @ linear.lora_b[...])  # Eq. (3), per layer


def merge_lora(model) -> None:
    """Fold ΔW into every adapted kernel (W ← W + ΔW); the forward then skips the adapter."""
    for linear in _adapted(model):
        if not linear.lora_merged:
            linear.kernel[...] = linear.kernel[...] + _delta(linear)
            linear.lora_merged = True


def unmerge_lora(model) -> None:
    """Undo :func:`merge_lora` (W ← W − ΔW) so adapters train again."""
    for linear in _adapted(model):
        if linear.lora_merged:
            linear.kernel[...] = linear.kernel[...] - _delta(linear)
            linear.lora_merged = False


def without_adapters(model):
    """The base model with adapters disabled (B replaced by zeros), sharing all base arrays.

    Use it as the frozen DPO reference: ``sequence_logps(without_adapters(model), ...)``. Works
    inside ``nnx.jit``; only the (small) zero B factors are new.
    """
    if any(m.lora_merged for m in _adapted(model)):
        raise ValueError("model: adapters are merged into the kernels; call unmerge_lora first")
    graphdef, adapters, rest = nnx.split(model, LoRAParam, ...)
    zeros = jax.tree.map(jnp.zeros_like, adapters)
    return nnx.merge(graphdef, zeros, rest)
