"""KV-cache generation: cached logits equal full forwards, greedy equals repeated argmax,
EOS/lengths, sampling filters, and no recompilation within a bucket."""

import dataclasses
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpref.llm import KVCache
from jaxpref.llm.generate import _generate, generate, left_align, sample_logits
from jaxpref.llm.hf_io import from_pretrained, save_pretrained
from jaxpref.llm.safetensors_io import SafetensorsFile

GOLDEN = pathlib.Path(__file__).parent / "golden"
PROMPTS = np.array([[0, 0, 5, 9, 14], [3, 4, 7, 1, 2], [0, 0, 0, 8, 6]], np.int32)
MASK = (np.arange(5)[None] >= np.array([2, 0, 3])[:, None]).astype(np.int32)


@pytest.fixture(scope="module", params=["mistral", "gpt2"])
def model(request):
    return from_pretrained(GOLDEN / request.param)


@nnx.jit
def full(model, ids, mask):
    return model(ids, mask)


def full_padded(model, ids, mask, width=14):
    """``full`` on a right-padded copy of fixed width (one compilation for every length)."""
    b, length = ids.shape
    pad = ((0, 0), (0, width - length))
    out = full(model, jnp.pad(jnp.asarray(ids), pad), jnp.pad(jnp.asarray(mask), pad))
    return out[:, :length]


def test_cached_decode_logits_equal_full_forward(model):
    ids, mask = jnp.asarray(PROMPTS), jnp.asarray(MASK)
    cache = KVCache.init(model.config, 3, 9, jnp.float32)
    logits, cache = nnx.jit(lambda m, i, a, c: m(i, a, cache=c))(model, ids, mask, cache)
    real = MASK.astype(bool)  # padding positions attend to nothing; their logits are unused
    np.testing.assert_allclose(
        np.asarray(logits)[real], np.asarray(full(model, ids, mask))[real], atol=1e-5
    )
    step = nnx.jit(lambda m, t, p, c: m(t, jnp.ones_like(t), positions=p, cache=c))
    positions = mask.sum(-1)
    for token in ([11, 12, 13], [20, 21, 22], [30, 31, 32], [40, 41, 42]):
        token = jnp.array(token)[:, None]
        before = cache
        step_logits, cache = step(model, token, positions[:, None], cache)
        ids = jnp.concatenate([ids, token], axis=1)
        mask = jnp.concatenate([mask, jnp.ones_like(token)], axis=1)
        expected = full_padded(model, ids, mask)[:, -1]
        np.testing.assert_allclose(step_logits[:, 0], expected, atol=1e-5)
        positions = positions + 1
    assert int(cache.index) == 9
    # Without explicit positions a cached call continues after the cached real tokens.
    implicit, _ = nnx.jit(lambda m, t, c: m(t, cache=c))(model, token, before)
    np.testing.assert_allclose(implicit[:, 0], step_logits[:, 0], atol=1e-6)


def test_greedy_equals_argmax_of_repeated_full_forwards(model):
    out = generate(
        model,
        PROMPTS,
        MASK,
        key=jax.random.key(0),
        max_new_tokens=6,
        temperature=0.0,
        bucket=8,
        eos_token_id=None,
    )
    assert out.tokens.shape == (3, 14) and out.new_tokens.shape == (3, 6)
    np.testing.assert_array_equal(out.lengths, [6, 6, 6])
    seqs = [list(PROMPTS[b][MASK[b] == 1]) for b in range(3)]
    for t in range(6):
        width = max(map(len, seqs))
        ids = np.array([s + [0] * (width - len(s)) for s in seqs])
        mask = np.array([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logits = full_padded(model, ids, mask)
        for b, seq in enumerate(seqs):
            seq.append(int(jnp.argmax(logits[b, len(seq) - 1])))
            assert int(out.new_tokens[b, t]) == seq[-1]
    right = np.stack([np.roll(p, -int((m == 0).sum())) for p, m in zip(PROMPTS, MASK)])
    again = generate(
        model,
        right,
        MASK[:, ::-1],
        key=jax.random.key(1),
        max_new_tokens=6,
        temperature=0.0,
        bucket=8,
        eos_token_id=None,
    )
    np.testing.assert_array_equal(again.new_tokens, out.new_tokens)


def test_eos_stops_rows_and_lengths(model):
    greedy = generate(
        model,
        PROMPTS,
        MASK,
        key=jax.random.key(0),
        max_new_tokens=6,
        temperature=0.0,
        bucket=8,
        eos_token_id=None,
    )
    eos = int(greedy.new_tokens[0, 2])
    out = generate(
        model,
        PROMPTS,
        MASK,
        key=jax.random.key(0),
        max_new_tokens=6,
        temperature=0.0,
        eos_token_id=eos,
        pad_token_id=95,
        bucket=8,
    )
    for b in range(3):
        row = list(np.asarray(greedy.new_tokens[b]))
        n = row.index(eos) + 1 if eos in row else 6
        assert int(out.lengths[b]) == n
        np.testing.assert_array_equal(out.new_tokens[b, :n], row[:n])
        assert (np.asarray(out.new_tokens[b, n:]) == 95).all()
        assert int(out.mask[b].sum()) == MASK[b].sum() + n


def test_same_bucket_does_not_recompile(model):
    kw = dict(max_new_tokens=4, bucket=8)
    generate(model, PROMPTS, MASK, key=jax.random.key(0), **kw)
    size = _generate._cache_size()
    generate(
        model,
        PROMPTS[:, 2:],
        MASK[:, 2:],
        key=jax.random.key(5),
        temperature=0.7,
        top_k=5,
        top_p=0.9,
        eos_token_id=3,
        **kw,
    )
    assert _generate._cache_size() == size
    generate(model, np.tile(PROMPTS, (1, 2)), np.tile(MASK, (1, 2)), key=jax.random.key(0), **kw)
    assert _generate._cache_size() == size + 1  # a new bucket (16) compiles once


def test_batch_bucket_pads_rows_and_does_not_recompile(model):
    kw = dict(key=jax.random.key(0), max_new_tokens=4, temperature=0.0, bucket=8)
    plain = generate(model, PROMPTS, MASK, eos_token_id=None, **kw)
    four = generate(model, PROMPTS, MASK, batch_bucket=4, eos_token_id=None, **kw)
    assert four.tokens.shape == plain.tokens.shape and four.lengths.shape == (3,)
    for a, b in zip(four, plain):
        np.testing.assert_array_equal(a, b)
    size = _generate._cache_size()
    two = generate(model, PROMPTS[:2], MASK[:2], batch_bucket=4, eos_token_id=None, **kw)
    assert _generate._cache_size() == size  # batch 2 and batch 3 share the 4-row compile
    np.testing.assert_array_equal(two.new_tokens, plain.new_tokens[:2])
    eos = int(plain.new_tokens[0, 1])  # row 0 stops after two tokens, dummy rows or not
    stop = generate(model, PROMPTS[:1], MASK[:1], batch_bucket=4, eos_token_id=eos, **kw)
    assert int(stop.lengths[0]) == 2 and stop.new_tokens.shape == (1, 4)
    with pytest.raises(ValueError, match="batch_bucket"):
        generate(model, PROMPTS, MASK, batch_bucket=0, **kw)


def test_sample_logits_filters():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.key(0), 4000)
    draw = jax.jit(
        jax.vmap(
            lambda k, t, kk, p: sample_logits(logits, k, t, kk, p)[0], in_axes=(0, None, None, None)
        )
    )
    top2 = np.bincount(draw(keys, 1.0, 2, 1.0), minlength=4) / 4000
    np.testing.assert_allclose(top2, [0.625, 0.375, 0, 0], atol=0.03)
    nucleus = np.bincount(draw(keys, 1.0, 0, 0.85), minlength=4) / 4000  # keeps 0.5, 0.3, 0.15
    np.testing.assert_allclose(nucleus, np.array([0.5, 0.3, 0.15, 0]) / 0.95, atol=0.03)
    plain = np.bincount(draw(keys, 1.0, 0, 1.0), minlength=4) / 4000
    np.testing.assert_allclose(plain, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    assert (np.asarray(draw(keys[:50], 0.0, 0, 1.0)) == 0).all()
    assert (np.asarray(draw(keys[:50], 1.0, 0, 0.3)) == 0).all()


def test_left_align_and_bad_input(model):
    ids, mask = left_align(jnp.array([[4, 5, 0, 0]]), jnp.array([[1, 1, 0, 0]]))
    np.testing.assert_array_equal(ids, [[0, 0, 4, 5]])
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="at least one real token"):
        generate(model, PROMPTS, MASK * 0, key=jax.random.key(0), max_new_tokens=2)
    if model.config.rope is None:  # learned positions: real length 5 + 60 > 64 rows
        with pytest.raises(ValueError, match="max_position_embeddings=64"):
            generate(model, PROMPTS, MASK, key=jax.random.key(0), max_new_tokens=60)


# ---- parity with transformers' greedy generate ------------------------------------------------

from test_llm_models import FAMILIES  # every family with golden files  # noqa: E402


def greedy_golden(family):
    f = SafetensorsFile(GOLDEN / family / "generate.safetensors")
    return {k: np.asarray(f.get(k)) for k in f.keys()}


def assert_matches_transformers(out, g):
    """Same tokens as transformers' ``generate(do_sample=False)`` (which stops once every row
    has stopped, so its width may be shorter), then padding."""
    width = g["new_tokens"].shape[1]
    np.testing.assert_array_equal(out.new_tokens[:, :width], g["new_tokens"])
    assert (np.asarray(out.new_tokens[:, width:]) == int(g["pad"])).all()
    stops = [
        next((t + 1 for t, x in enumerate(row) if x in set(g["eos"])), 8) for row in g["new_tokens"]
    ]
    np.testing.assert_array_equal(out.lengths, stops)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_transformers_generate(family):
    """Left-padded prompts of different lengths, an EOS list that stops two rows early."""
    g = greedy_golden(family)
    model = from_pretrained(GOLDEN / family)
    out = generate(
        model,
        g["prompt_ids"],
        g["prompt_mask"],
        key=jax.random.key(0),
        max_new_tokens=8,
        temperature=0.0,
        eos_token_id=[int(e) for e in g["eos"]],
        pad_token_id=int(g["pad"]),
    )
    assert_matches_transformers(out, g)


@pytest.mark.parametrize("family", ["gemma2", "qwen3"])
def test_greedy_with_scan_layers_and_checkpoint_defaults(family, tmp_path):
    """A scanned model (per-layer windows as scanned data) generates the same tokens, with the
    stop and pad ids and greedy decoding taken from the checkpoint's generation_config.json."""
    g = greedy_golden(family)
    path = tmp_path / family
    shutil.copytree(GOLDEN / family, path)
    defaults = {"eos_token_id": [int(e) for e in g["eos"]], "pad_token_id": int(g["pad"])}
    (path / "generation_config.json").write_text(json.dumps({**defaults, "do_sample": False}))
    model = from_pretrained(path, scan_layers=True)
    assert model.generation_config.eos_token_id == tuple(defaults["eos_token_id"])
    out = generate(
        model, g["prompt_ids"], g["prompt_mask"], key=jax.random.key(3), max_new_tokens=8
    )
    assert_matches_transformers(out, g)


def test_generation_config_defaults_and_refusals(tmp_path):
    path = tmp_path / "gpt2"
    shutil.copytree(GOLDEN / "gpt2", path)
    plain = from_pretrained(path)  # no generation_config.json: config.json's ids, greedy
    gc = plain.generation_config
    assert (gc.eos_token_id, gc.pad_token_id, gc.do_sample, gc.top_k) == ((0,), None, False, 50)
    file = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "eos_token_id": [5, 6]}
    (path / "generation_config.json").write_text(json.dumps(file))
    gc = from_pretrained(path).generation_config
    assert (gc.do_sample, gc.temperature, gc.top_k, gc.top_p) == (True, 0.7, 50, 0.9)
    assert gc.eos_token_id == (5, 6) and gc.pad_token_id is None
    (path / "generation_config.json").write_text(json.dumps({**file, "repetition_penalty": 1.1}))
    model = from_pretrained(path)
    with pytest.raises(ValueError, match="repetition_penalty=1.1, which generate does not"):
        generate(model, PROMPTS, MASK, key=jax.random.key(0), max_new_tokens=2)
    fine = dataclasses.replace(model.generation_config, unsupported=())
    out = generate(
        model, PROMPTS, MASK, key=jax.random.key(0), max_new_tokens=2, generation_config=fine
    )
    assert out.new_tokens.shape == (3, 2)
    save_pretrained(model, tmp_path / "saved")  # the defaults travel with the checkpoint
    again = from_pretrained(tmp_path / "saved").generation_config
    assert again == model.generation_config
    import transformers

    theirs = transformers.GenerationConfig.from_pretrained(tmp_path / "saved")
    assert (theirs.eos_token_id, theirs.temperature, theirs.repetition_penalty) == (
        [5, 6],
        0.7,
        1.1,
    )
    save_pretrained(plain, tmp_path / "plain")
    assert not (tmp_path / "plain" / "generation_config.json").exists()


def test_bucket_padding_never_counts_against_positions(model):
    """Real length + max_new_tokens ≤ max_position_embeddings is accepted whatever the bucket;
    RoPE models are not capped at all (as in transformers), learned positions are."""
    limit = model.config.max_position_embeddings  # 64
    prompt, mask = PROMPTS[:, -3:], MASK[:, -3:]  # at most 3 real tokens
    kw = dict(key=jax.random.key(0), temperature=0.0, bucket=32, eos_token_id=None)
    out = generate(model, prompt, mask, max_new_tokens=limit - 3, **kw)  # bucket 32 + 61 > 64
    assert out.new_tokens.shape == (3, limit - 3)
    if model.config.rope is None:
        with pytest.raises(ValueError, match="longest prompt"):
            generate(model, prompt, mask, max_new_tokens=limit - 2, **kw)
    else:
        out = generate(model, prompt, mask, max_new_tokens=limit + 4, **kw)
        assert int(out.lengths.min()) == limit + 4
