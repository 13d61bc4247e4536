"""Packed rows (segment ids): each segment's log-probs equal its own unpadded run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref import llm
from jaxpref.llm.model import segment_position_ids


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
@pytest.mark.parametrize("scan", [False, True])
def test_packed_segments_equal_separate_rows(model_type, scan):
    config = llm.DecoderConfig.tiny(model_type)
    model = llm.create_model(config, seed=0, dtype=jnp.float64, scan_layers=scan)
    rng = np.random.default_rng(0)
    parts = [rng.integers(1, 90, n) for n in (5, 3, 6)]
    packed = np.concatenate(parts + [np.zeros(2, int)])[None]  # 14 real + 2 padding
    seg = np.concatenate(
        [np.full(len(p), i + 1) for i, p in enumerate(parts)] + [np.zeros(2, int)]
    )[None]
    loss = (seg > 0).astype(np.int32)
    starts = np.r_[0, np.cumsum([len(p) for p in parts])[:-1]]
    loss[0, starts] = 0  # a segment's first token has no prediction inside its segment
    mask = (seg > 0).astype(np.int32)
    _, per_token = llm.sequence_logps(
        model,
        jnp.asarray(packed),
        jnp.asarray(mask),
        jnp.asarray(loss),
        segment_ids=jnp.asarray(seg),
    )
    for p, start in zip(parts, starts):
        ids = jnp.asarray(p[None])
        ones = jnp.ones_like(ids)
        _, alone = llm.sequence_logps(model, ids, ones, ones.at[:, 0].set(0))
        np.testing.assert_allclose(
            np.asarray(per_token[0, start : start + len(p)]), np.asarray(alone[0]), atol=1e-12
        )


def test_segment_positions_restart():
    seg = jnp.array([[1, 1, 1, 2, 2, 3, 0, 0]])
    np.testing.assert_array_equal(segment_position_ids(seg), [[0, 1, 2, 0, 1, 0, 0, 0]])


def test_segment_ids_refused_with_a_cache_or_a_plain_callable():
    model = llm.create_model(llm.DecoderConfig.tiny())
    ids = jnp.ones((1, 4), jnp.int32)
    cache = llm.KVCache.init(model.config, 1, 8, jnp.float32)
    with pytest.raises(ValueError, match="segment_ids: packed rows cannot use a KV cache"):
        model.hidden_states(ids, cache=cache, segment_ids=ids)
    with pytest.raises(ValueError, match="segment_ids: the model has no hidden_states"):
        llm.sequence_logps(
            lambda i, m: jax.nn.one_hot(i, 4), ids, ids, ids.at[:, 0].set(0), segment_ids=ids
        )
