"""A small Flax NNX policy over a finite response set whose last layer is linear.

π(y|x) = softmax_y(φ_η(x, y)ᵀθ), with φ_η the last hidden layer (an MLP of the raw response
features ψ(x, y)) and θ the last-layer weights. Fixing the body η, the policy is log-linear in θ
with features φ = ``last_layer_features(model, psi)``: ADPO's linearisation of a neural policy
(Kveton et al., arXiv 2503.01076, §4: "linearize the DPO objective at the last layer").
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float


class MLPPolicy(nnx.Module):
    """MLP body (tanh) + a bias-free linear head giving one logit per response.

    Args:
      in_features: dimension of the raw response features ψ(x, y).
      hidden: widths of the hidden layers; the last one is the feature dimension d.
      rngs: ``nnx.Rngs`` for initialisation.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 32), *, rngs: nnx.Rngs):
        if not hidden:
            raise ValueError("hidden: need at least one hidden layer")
        widths = (in_features, *hidden)
        self.body = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.head = nnx.Linear(hidden[-1], 1, use_bias=False, rngs=rngs)

    def features(self, psi: Float[Array, "... K p"]) -> Float[Array, "... K d"]:
        h = psi
        for layer in self.body:
            h = jnp.tanh(layer(h))
        return h

    def __call__(self, psi: Float[Array, "... K p"]) -> Float[Array, "... K"]:
        """log π(y|x) for each of the K responses of each context."""
        return jax.nn.log_softmax(self.head(self.features(psi))[..., 0], axis=-1)


def last_layer_features(model: MLPPolicy, psi: Float[Array, "... K p"]) -> Float[Array, "... K d"]:
    """φ(x, y): the last hidden layer, the features of the log-linear linearisation."""
    return model.features(psi)


def last_layer_params(model: MLPPolicy) -> Float[Array, " d"]:
    """θ: the last-layer weights, so that log π = log_softmax(φᵀθ)."""
    return model.head.kernel[...][:, 0]
