"""ADPO §6.2's pool of preference pairs from a language model: where an LLM meets the design
layer (``jaxpref.design`` selects on the arrays returned here).

Kveton et al., "Active Learning for Direct Preference Optimization", arXiv 2503.01076, §6.2: the
features of a pair are the model's pooled hidden states of its two responses, the offsets the
reference model's log-ratios.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxpref.data import feature_pairs as fp
from jaxpref.llm.features import pair_features_and_logps


class LLMPairPool(NamedTuple):
    phi: np.ndarray  # (N, d)  φ_i = (f_w,i − f_l,i)P / max_j ‖·‖ (``fp.pair_design_matrix``)
    ref_logratio: np.ndarray  # (N,)  b_i (``fp.scaled_offsets``)
    features_w: np.ndarray  # (N, E)  the model's features of (x_i, y_w), float32
    features_l: np.ndarray  # (N, E)  and of (x_i, y_l)
    logps_w: np.ndarray  # (N,)  log π₀(y_w | x_i), the response tokens' summed log-probs
    logps_l: np.ndarray  # (N,)  log π₀(y_l | x_i)


def llm_pair_pool(
    model, pairs, *, pad_id: int, projection=None, offset_scale: str = "max", **kwargs
) -> LLMPairPool:
    """ADPO §6.2's pool from a language model π₀: φ_i and b_i of every preference pair, from one
    pass of ``model`` over both sides of all pairs.

    φ(x, y) is the model's pooled final hidden state of prompt + response and log π₀(y|x) the
    summed response log-probs, both from ``jaxpref.llm.pair_features_and_logps`` (one jitted,
    length-bucketed pass); then φ_i = (φ(x_i, y_w) − φ(x_i, y_l))P rescaled to max_i ‖φ_i‖ = 1
    (``pair_design_matrix``) and b_i = log π₀(y_w|x_i) − log π₀(y_l|x_i), scaled by
    ``offset_scale`` (``scaled_offsets``; both of ``jaxpref.data.feature_pairs``, here ``fp``).
    Labels are implicit: the winner comes first (s_i = 1).

    Args:
      model: a ``jaxpref.llm.Decoder`` (the reference π₀ and the feature map).
      pairs: N ≥ 1 objects with ``prompt``, ``chosen`` and ``rejected`` token lists (e.g.
        ``jaxpref.data.EncodedPair``).
      pad_id: the tokenizer's padding id.
      projection: None or an (E, d) P (E the model's width; ``fp.feature_projection`` makes
        one).
      offset_scale: one of ``fp.OFFSET_SCALES``.
      kwargs: ``pooling``, ``batch_size``, ``bucket``, ``mesh`` of the pass
        (``jaxpref.llm.bucketed_features_and_logps``).

    Returns: ``LLMPairPool`` of float64 φ (N, d) and b (N,), with the raw features and log-probs.
    Bad ``offset_scale``, ``projection`` or an empty ``pairs`` are refused before the pass.

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, §6.2 (features of an LLM, b_i from π₀), Eq. (6), Assumption 2.
    """
    if offset_scale not in fp.OFFSET_SCALES:
        raise ValueError(f"offset_scale: unknown {offset_scale!r}; choices: {fp.OFFSET_SCALES}")
    if not len(pairs):
        raise ValueError("pairs: need at least one preference pair")
    projection = fp.feature_projection(model.config.embed_width, projection)
    fw, fl, lw, ll = pair_features_and_logps(model, pairs, pad_id=pad_id, **kwargs)
    phi, b = fp.pair_design_matrix(fw, fl, projection), fp.scaled_offsets(lw, ll, offset_scale)
    return LLMPairPool(phi, b, fw, fl, lw, ll)


__all__ = ["LLMPairPool", "llm_pair_pool"]
