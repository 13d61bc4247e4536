"""Full-vocabulary per-token statistics of a causal LM on given rows: entropy of the next-token
distribution and its KL to a reference, as PM RLHF's official trainer reports them
(``entropy`` and ``full_kl`` in ``generate_experience``), averaged over the counted tokens.

For each counted token t (``loss_mask[b, t] = 1``, predicted from position t − 1):

.. math:: H_t = -\\sum_v \\pi(v \\mid x_{<t}) \\log \\pi(v \\mid x_{<t}), \\qquad
          \\mathrm{KL}_t = \\sum_v \\pi(v \\mid x_{<t})
          [\\log \\pi(v \\mid x_{<t}) - \\log \\pi_{\\rm ref}(v \\mid x_{<t})]

computed from log-softmax in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_entropy_kl(model, ref_model, input_ids, attention_mask, loss_mask):
    """``(entropy (B,), kl (B,), tokens (B,))``: sums over each row's counted tokens.

    Divide by ``tokens`` for per-token means (the code's "entropy" and "KL" columns).
    """
    mask = (loss_mask * attention_mask)[:, 1:].astype(jnp.float32)
    logq = _log_softmax(model(input_ids, attention_mask))
    logr = _log_softmax(ref_model(input_ids, attention_mask))
    q = jnp.exp(logq)
    entropy = -jnp.sum(q * logq, axis=-1)
    kl = jnp.sum(q * (logq - logr), axis=-1)
    return jnp.sum(mask * entropy, -1), jnp.sum(mask * kl, -1), jnp.sum(mask, -1)


def _log_softmax(logits_BxLxV):
    logits = logits_BxLxV[:, :-1].astype(jnp.promote_types(logits_BxLxV.dtype, jnp.float32))
    return jax.nn.log_softmax(logits, axis=-1)
