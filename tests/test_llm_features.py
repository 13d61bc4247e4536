"""Sequence features: a padded row's features equal its unpadded run's last (or mean) hidden
state, computed one example at a time; the offsets from the same pass equal sequence_logps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpref import llm
from jaxpref.llm.features import pool_hidden

CONFIG = llm.DecoderConfig.tiny("llama", tie_word_embeddings=False)
LENGTHS = (5, 3, 7, 6)
WIDTH = 8


@pytest.fixture(scope="module")
def model():
    return llm.create_model(CONFIG, seed=1, dtype=jnp.float64)


def sequences():
    rng = np.random.default_rng(0)
    return [rng.integers(1, CONFIG.vocab_size, n) for n in LENGTHS]


def padded(seqs, side):
    ids = np.zeros((len(seqs), WIDTH), np.int32)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(WIDTH - len(s), WIDTH)
        ids[i, cols], mask[i, cols] = s, 1
    return jnp.asarray(ids), jnp.asarray(mask)


@pytest.fixture(scope="module")
def alone(model):
    """Each sequence alone, unpadded: ``pooling -> (N, E)``, its last hidden state or the plain
    mean of them."""
    hidden = [np.asarray(model.hidden_states(jnp.asarray(s[None])))[0] for s in sequences()]
    return {
        "last": np.stack([h[-1] for h in hidden]),
        "mean": np.stack([h.mean(0) for h in hidden]),
    }


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padded_batch_equals_each_example_alone(model, alone, side, pooling):
    ids, mask = padded(sequences(), side)
    got = llm.sequence_features(model, ids, mask, pooling=pooling)
    assert got.shape == (len(LENGTHS), CONFIG.embed_width) and got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), alone[pooling], atol=1e-10)


def test_scanned_model_under_jit_equals_each_example_alone():
    scanned = llm.create_model(CONFIG, seed=1, dtype=jnp.float64, scan_layers=True)
    seqs = sequences()
    ids, mask = padded(seqs, "left")
    got = nnx.jit(lambda m, i, a: llm.sequence_features(m, i, a, pooling="mean"))(
        scanned, ids, mask
    )
    for row, s in zip(np.asarray(got), seqs):
        want = np.asarray(scanned.hidden_states(jnp.asarray(s[None])))[0].mean(0)
        np.testing.assert_allclose(row, want, atol=1e-10)


def test_low_precision_compute_gives_float32():
    model = llm.create_model(CONFIG, seed=1, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    ids, mask = padded(sequences()[:2], "left")
    feats, logps = llm.features_and_logps(model, ids, mask, mask.at[:, : WIDTH - 1].set(0))
    assert feats.dtype == jnp.float32 and logps.dtype == jnp.float32


def test_pool_hidden_against_a_loop():
    rng = np.random.default_rng(3)
    h = rng.normal(size=(3, 5, 4))
    mask = np.array([[0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    last = pool_hidden(jnp.asarray(h), jnp.asarray(mask), "last")
    mean = pool_hidden(jnp.asarray(h), jnp.asarray(mask), "mean")
    for i in range(3):
        real = np.flatnonzero(mask[i])
        np.testing.assert_allclose(np.asarray(last[i]), h[i, real[-1]], atol=1e-12)
        np.testing.assert_allclose(np.asarray(mean[i]), h[i, real].mean(0), atol=1e-12)


def test_offsets_from_one_pass_equal_the_difference_of_sequence_logps(model):
    seqs = sequences()
    ids, mask = padded(seqs, "left")
    loss = np.asarray(mask).copy()
    for i, s in enumerate(seqs):  # the response: the last two tokens of each row
        loss[i, : WIDTH - 2] = 0
    loss = jnp.asarray(loss)
    feats, logps = llm.features_and_logps(model, ids, mask, loss)
    reference, _ = llm.sequence_logps(model, ids, mask, loss)
    np.testing.assert_allclose(np.asarray(logps), np.asarray(reference), atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(feats), np.asarray(llm.sequence_features(model, ids, mask)), atol=1e-12
    )
    # rows (0, 1) and (2, 3) as (chosen, rejected) pairs
    b = llm.pair_offsets(logps[0::2], logps[1::2])
    np.testing.assert_allclose(np.asarray(b), np.asarray(reference[0::2] - reference[1::2]))


def test_packed_segments_equal_separate_rows(model, alone):
    seqs = sequences()[:3]
    packed = jnp.asarray(np.concatenate(seqs)[None])
    seg = jnp.asarray(np.concatenate([np.full(len(s), i + 1) for i, s in enumerate(seqs)])[None])
    got = llm.sequence_features(model, packed, jnp.ones_like(packed), segment_ids=seg)
    assert got.shape == (1, 3, CONFIG.embed_width)
    np.testing.assert_allclose(np.asarray(got[0]), alone["last"][:3], atol=1e-10)


def test_sharded_equals_single_device():
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    sharded = llm.create_model(CONFIG, seed=3, mesh=mesh)
    graphdef, state = nnx.split(sharded)
    single = nnx.merge(graphdef, jax.device_put(state, jax.devices()[0]))
    ids, mask = padded(sequences(), "right")
    want = llm.sequence_features(single, ids, mask)
    data = NamedSharding(mesh, P(("data", "fsdp")))
    with jax.set_mesh(mesh):
        fn = nnx.jit(lambda m, i, a: llm.sequence_features(m, i, a))
        got = fn(sharded, *jax.device_put((ids, mask), data))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_bad_input_is_named():
    model = llm.create_model(CONFIG)
    ids, mask = padded(sequences(), "right")
    with pytest.raises(ValueError, match="pooling: unknown 'max'"):
        llm.sequence_features(model, ids, mask, pooling="max")
    with pytest.raises(ValueError, match=r"shape mismatch: input_ids\(4, 8\), attention_mask"):
        llm.sequence_features(model, ids, mask[:, :5])
    with pytest.raises(ValueError, match="input_ids: expected shape"):
        llm.sequence_features(model, ids[0], mask[0])
    with pytest.raises(ValueError, match="attention_mask: a row has no real token"):
        llm.sequence_features(model, ids, mask.at[1].set(0))
    with pytest.raises(ValueError, match="attention_mask: row 1 has no real token"):
        llm.sequence_features(model, np.asarray(ids), np.asarray(mask.at[1].set(0)))  # host
    with pytest.raises(ValueError, match="shape mismatch: input_ids.*loss_mask"):
        llm.features_and_logps(model, ids, mask, mask[:, :3])
    with pytest.raises(ValueError, match="loss_mask: column 0 must be 0"):
        llm.features_and_logps(model, ids, mask, mask)
    with pytest.raises(ValueError, match="shape mismatch: logps_chosen"):
        llm.pair_offsets(jnp.zeros(2), jnp.zeros(3))


def test_bucketed_pass_equals_one_call_per_row():
    model = llm.create_model(CONFIG, seed=2, dtype=jnp.float64)
    rng = np.random.default_rng(5)
    prompts = [list(rng.integers(1, 90, n)) for n in (3, 9, 2)]
    responses = [list(rng.integers(1, 90, n)) for n in (2, 4, 1)]
    feats, logps = llm.bucketed_features_and_logps(
        model, prompts, responses, pad_id=0, batch_size=2, bucket=4
    )
    assert feats.shape == (3, CONFIG.embed_width) and feats.dtype == np.float32
    for p, r, f, lp in zip(prompts, responses, feats, logps):
        ids = jnp.asarray([p + r])
        loss = jnp.asarray([[0] * len(p) + [1] * len(r)])
        want_f, want_lp = llm.features_and_logps(model, ids, jnp.ones_like(ids), loss)
        np.testing.assert_allclose(f, np.asarray(want_f[0]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lp, float(want_lp[0]), rtol=1e-10)
    with pytest.raises(ValueError, match="responses: an empty response"):
        llm.bucketed_features_and_logps(model, [[1]], [[]], pad_id=0)


def test_pair_features_are_each_sides_own_unpadded_pass():
    """Both sides of every pair share one bucketed pass; each returned row equals that side's
    prompt + response run alone (winners then losers, in pair order)."""
    from jaxpref.data import EncodedPair

    model = llm.create_model(CONFIG, seed=3, dtype=jnp.float64)
    rng = np.random.default_rng(7)
    pairs = [
        EncodedPair(*(list(rng.integers(1, 90, n)) for n in lengths))
        for lengths in ((3, 2, 4), (6, 1, 1), (2, 5, 3))
    ]
    fw, fl, lw, ll = llm.pair_features_and_logps(model, pairs, pad_id=0, batch_size=4, bucket=4)
    assert fw.shape == fl.shape == (3, CONFIG.embed_width) and lw.shape == ll.shape == (3,)
    for i, p in enumerate(pairs):
        for response, f, lp in ((p.chosen, fw[i], lw[i]), (p.rejected, fl[i], ll[i])):
            ids = jnp.asarray([p.prompt + response])
            loss = jnp.asarray([[0] * len(p.prompt) + [1] * len(response)])
            want_f, want_lp = llm.features_and_logps(model, ids, jnp.ones_like(ids), loss)
            np.testing.assert_allclose(f, np.asarray(want_f[0]), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(lp, float(want_lp[0]), rtol=1e-10)


def test_llm_pair_pool_is_one_pass_then_phi_and_b():
    """train.feature_pool.llm_pair_pool: the raw arrays are the pair pass's; φ and b recomputed
    here in NumPy from them (difference, projection, max-norm and max-|b| rescaling); bad options
    are refused before the model is touched (a stand-in that cannot run proves it)."""
    from types import SimpleNamespace

    from jaxpref.data import EncodedPair
    from jaxpref.train.feature_pool import llm_pair_pool

    model = llm.create_model(CONFIG, seed=3, dtype=jnp.float64)
    rng = np.random.default_rng(8)
    pairs = [
        EncodedPair(*(list(rng.integers(1, 90, n)) for n in lengths))
        for lengths in ((3, 2, 4), (6, 1, 1), (2, 5, 3))
    ]
    P = rng.normal(size=(CONFIG.embed_width, 2))
    kw = dict(pad_id=0, batch_size=4, bucket=4)
    pool = llm_pair_pool(model, pairs, projection=P, offset_scale="max", **kw)
    raw = llm.pair_features_and_logps(model, pairs, **kw)
    for got, want in zip(pool[2:], raw):
        np.testing.assert_array_equal(got, want)
    fw, fl, lw, ll = (np.asarray(x, np.float64) for x in raw)
    diff = (fw - fl) @ P
    np.testing.assert_allclose(pool.phi, diff / np.sqrt((diff**2).sum(1)).max(), rtol=1e-12)
    np.testing.assert_allclose(pool.ref_logratio, (lw - ll) / np.abs(lw - ll).max(), rtol=1e-12)
    assert pool.phi.dtype == pool.ref_logratio.dtype == np.float64

    stand_in = SimpleNamespace(config=CONFIG)  # not callable: any forward pass would fail
    for change, message in [
        (dict(offset_scale="sum"), "offset_scale: unknown 'sum'"),
        (dict(projection=P[:-1]), r"projection: expected shape \(\d+, d\)"),
        (dict(pooling="max"), "pooling: unknown 'max'"),
    ]:
        with pytest.raises(ValueError, match=message):
            llm_pair_pool(stand_in, pairs, **kw | change)
    with pytest.raises(ValueError, match="pairs: need at least one"):
        llm_pair_pool(stand_in, [], **kw)
