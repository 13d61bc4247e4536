"""The model layer at scale: scan over layers (same logits and gradients, program size flat in
depth), remat policies, parameter vs compute dtype, chunked log-probs (equal to the full
computation; temporary memory read from the compiled program), and the attention paths."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpref import llm
from jaxpref.llm.hf_map import layer_names
from jaxpref.llm.layers import attend
from jaxpref.llm.sharding import flat_variables, path_name

GOLDEN = pathlib.Path(__file__).parent / "golden"
IDS = jnp.array([[3, 17, 42, 8, 90, 5, 61, 7], [0, 0, 11, 12, 13, 14, 15, 16]])
MASK = jnp.array([[1] * 8, [0, 0, 1, 1, 1, 1, 1, 1]])
LOSS = MASK.at[:, :4].set(0)


def loss_fn(model, chunk_size=None):
    summed, _ = llm.sequence_logps(model, IDS, MASK, LOSS, chunk_size=chunk_size)
    return -summed.mean()


@nnx.jit
def logits_and_grads(model):
    value, grads = nnx.value_and_grad(loss_fn)(model)
    return model(IDS, MASK), value, grads


def per_layer(state, num_layers, scanned):
    """name → array with per-layer names (``layers.3.x``) whether or not the model is scanned."""
    out = {}
    for key, var in flat_variables(state):
        name, value = path_name(key), np.asarray(var.get_value())
        names = layer_names(name, num_layers) if scanned else None
        if names is None:
            out[name] = value
        else:
            out.update({n: value[i] for i, n in enumerate(names)})
    return out


@pytest.mark.parametrize("family", ["llama3", "mistral", "gpt2"])
def test_scan_layers_equals_the_loop_in_logits_and_gradients(family):
    scan = llm.from_pretrained(GOLDEN / family, scan_layers=True)
    assert scan.layers.attn.q_proj.kernel[...].shape[0] == scan.config.num_layers
    logits_l, value_l, grads_l = golden_run(family)
    logits_s, value_s, grads_s = golden_run(family, scan_layers=True)
    np.testing.assert_allclose(logits_s, logits_l, atol=2e-5)
    np.testing.assert_allclose(value_s, value_l, rtol=1e-6)
    n = scan.config.num_layers
    gl, gs = per_layer(grads_l, n, False), per_layer(grads_s, n, True)
    assert set(gl) == set(gs)
    for name in gl:
        np.testing.assert_allclose(gs[name], gl[name], rtol=1e-5, atol=2e-5, err_msg=name)


def _lowered_size(num_layers, scan_layers):
    config = llm.DecoderConfig.tiny(num_layers=num_layers)
    model = nnx.eval_shape(lambda: llm.Decoder(config, scan_layers=scan_layers, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)

    def loss(state):
        summed, _ = llm.sequence_logps(nnx.merge(graphdef, state), IDS, MASK, LOSS)
        return summed.sum()

    return len(jax.jit(jax.grad(loss)).lower(state).as_text())


def test_program_size_does_not_grow_with_depth_when_scanned():
    scanned = _lowered_size(2, True), _lowered_size(16, True)
    looped = _lowered_size(2, False), _lowered_size(16, False)
    assert scanned[1] < 1.05 * scanned[0]  # one scanned block, whatever the depth
    assert looped[1] > 4 * looped[0]  # the Python loop inlines every block


@functools.lru_cache
def golden_run(family, **options):
    return logits_and_grads(llm.from_pretrained(GOLDEN / family, **options))


@pytest.mark.parametrize(
    "remat,scan_layers",
    [("block", False), ("dots_saveable", True), ("dots_with_no_batch_dims_saveable", False)],
)
def test_remat_policies_keep_values_and_gradients(remat, scan_layers):
    _, value_b, grads_b = golden_run("llama3", scan_layers=scan_layers)
    _, value_r, grads_r = golden_run("llama3", scan_layers=scan_layers, remat=remat)
    np.testing.assert_allclose(value_r, value_b, rtol=1e-6)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # noqa: E731
    jax.tree.map(close, grads_r, grads_b)


def test_remat_reduces_temporary_memory():
    """Per-block remat shrinks the compiled backward's temporaries (read from the program)."""
    config = llm.DecoderConfig.tiny(num_layers=4, hidden_size=64, intermediate_size=256)
    ids = jnp.zeros((8, 64), jnp.int32)
    mask, loss = jnp.ones_like(ids), jnp.ones_like(ids).at[:, 0].set(0)

    def temp_bytes(remat):
        model = nnx.eval_shape(lambda: llm.Decoder(config, remat=remat, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(model)

        def f(state):
            return llm.sequence_logps(nnx.merge(graphdef, state), ids, mask, loss)[0].sum()

        compiled = jax.jit(jax.grad(f)).lower(state).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    none, block = temp_bytes("none"), temp_bytes("block")
    dots = temp_bytes("dots_with_no_batch_dims_saveable")
    assert block < dots < 0.7 * none  # 6.4 < 9.0 < 19.0 MiB when written


def test_bad_runtime_options_name_the_argument():
    config = llm.DecoderConfig.tiny()
    with pytest.raises(ValueError, match=r"remat: unknown policy 'full'; choices: \('none'"):
        llm.create_model(config, remat="full")
    with pytest.raises(ValueError, match="dtype: expected a floating dtype"):
        llm.create_model(config, dtype=jnp.int32)
    with pytest.raises(ValueError, match="param_dtype: expected a floating dtype"):
        llm.Decoder(config, param_dtype="bogus", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="attention: unknown 'flash'"):
        llm.from_pretrained(GOLDEN / "llama3", attention="flash")
    assert llm.REMAT_POLICIES[0] == "none" and "dots_saveable" in llm.REMAT_POLICIES


# ---- dtypes ---------------------------------------------------------------------------------


def test_bf16_compute_with_float32_parameters():
    """Mixed precision: float32 storage, bfloat16 compute; logits within 0.25 of float32 on the
    golden model (|logits| up to 7; 0.15–0.17 seen, bf16 keeps 8 significant bits), log-probs
    and gradients float32."""
    mixed = llm.from_pretrained(GOLDEN / "llama3", dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert mixed.embed.embedding[...].dtype == jnp.float32
    assert (mixed.dtype, mixed.param_dtype) == (jnp.bfloat16, jnp.float32)
    logits_f, _, _ = golden_run("llama3")
    logits_m, value, grads = logits_and_grads(mixed)
    assert logits_m.dtype == jnp.bfloat16 and value.dtype == jnp.float32
    real = np.asarray(MASK).astype(bool)
    err = np.abs(np.asarray(logits_m, np.float32) - np.asarray(logits_f))[real].max()
    assert err < 0.25, err
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    _, per_token = llm.sequence_logps(mixed, IDS, MASK, LOSS)
    assert per_token.dtype == jnp.float32
    bf16 = llm.from_pretrained(GOLDEN / "llama3", dtype=jnp.bfloat16)
    assert bf16.param_dtype == jnp.bfloat16  # param_dtype defaults to dtype


# ---- chunked log-probs ----------------------------------------------------------------------


@functools.partial(nnx.jit, static_argnums=1)
def chunked_run(model, chunk_size):
    """Per-token log-probs and gradients, chunked (``chunk_size``) or from the full logits (0)."""

    def loss(model):
        if chunk_size:
            per_token = llm.sequence_logps(model, IDS, MASK, LOSS, chunk_size=chunk_size)[1]
        else:
            per_token = jnp.where(LOSS * MASK > 0, llm.token_logps(model(IDS, MASK), IDS), 0.0)
        return -per_token.sum(-1).mean(), per_token

    (_, per_token), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    return per_token, grads


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 8])
def test_chunked_logps_equal_the_full_computation(chunk_size):
    """Chunks of 1, 3 (padded), 5 (padded) and 8 (= L, one chunk) positions."""
    model = llm.from_pretrained(GOLDEN / "llama3")
    full, reference = chunked_run(model, 0)
    per_token, grads = chunked_run(model, chunk_size)
    np.testing.assert_allclose(per_token, full, atol=1e-6)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    jax.tree.map(close, grads, reference)
    with pytest.raises(ValueError, match="chunk_size: must be an integer ≥ 1"):
        llm.sequence_logps(model, IDS, MASK, LOSS, chunk_size=0)


def test_chunked_logps_never_hold_the_full_float32_logits():
    """V = 32k, L = 1024: the full float32 logits alone are 128 MiB; the compiled forward and
    backward of the default (chunked) call need less temporary memory than that in all, while
    the unchunked computation needs more."""
    vocab, length = 32768, 1024
    config = llm.DecoderConfig.tiny(
        vocab_size=vocab, num_layers=1, num_heads=2, num_kv_heads=1, max_position_embeddings=length
    )
    model = nnx.eval_shape(lambda: llm.Decoder(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    ids = jnp.zeros((1, length), jnp.int32)
    mask, loss = jnp.ones_like(ids), jnp.ones_like(ids).at[:, 0].set(0)

    def chunked(state):
        return llm.sequence_logps(nnx.merge(graphdef, state), ids, mask, loss)[0].sum()

    def full(state):
        logits = nnx.merge(graphdef, state)(ids, mask)
        return (llm.token_logps(logits, ids) * loss).sum()

    full_logits = length * vocab * 4

    def temp(f):
        compiled = jax.jit(jax.value_and_grad(f)).lower(state).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp(chunked) < 0.75 * full_logits
    assert temp(full) > 2 * full_logits


def test_loss_mask_convention_is_enforced():
    model = llm.from_pretrained(GOLDEN / "llama3")
    ones = jnp.ones_like(IDS)
    first_real = LOSS.at[1, 2].set(1)  # row 1's first real token: nothing real predicts it
    # (masks, the first rule broken, where, every rule broken: in the graph any may report)
    cases = (
        (ones, ones, r"column 0 must be 0", r"row 0, column 0", "column 0"),
        (MASK, LOSS.at[1, 1].set(1), r"1 on a padding token", r"row 1, column 1", "padding"),
        (MASK, first_real, r"predecessor is padding", r"row 1, column 2", "predecessor"),
    )
    logps = jax.jit(lambda m, lm: llm.sequence_logps(model, IDS, m, lm)[0])
    for mask, loss, rule, where, broken in cases:
        with pytest.raises(ValueError, match=rf"loss_mask: .*{rule}.*{where}"):  # host masks
            llm.sequence_logps(model, np.asarray(IDS), np.asarray(mask), np.asarray(loss))
        with pytest.raises(ValueError, match=rf"loss_mask: .*{rule}"):  # eager device masks
            llm.sequence_logps(model, IDS, mask, loss)
        with pytest.raises(jax.errors.JaxRuntimeError, match=rf"loss_mask: .*{broken}"):  # jit
            jax.block_until_ready(logps(mask, loss))
    llm.check_loss_mask(np.asarray(MASK), np.asarray(LOSS))  # host arrays, no device work
    assert np.isfinite(logps(MASK, LOSS)).all()


# ---- attention paths ------------------------------------------------------------------------


def _random_qkv(key, b=2, length=7, slots=7, heads=4, kv_heads=2, dim=8, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(key, 3)
    q = jax.random.normal(k1, (b, length, heads, dim), dtype)
    k = jax.random.normal(k2, (b, slots, kv_heads, dim), dtype)
    v = jax.random.normal(k3, (b, slots, kv_heads, dim), dtype)
    return q, k, v


def test_dot_product_attention_path_equals_the_reference():
    """Left padding, causal, sliding window, GQA, a fully masked (padding) query row."""
    q, k, v = _random_qkv(jax.random.key(0))
    valid = jnp.array([[0, 0, 1, 1, 1, 1, 1], [1] * 7], bool)
    slots = jnp.arange(7)
    causal = slots[None, :] <= slots[:, None]
    for window in (None, 3):
        allowed = causal if window is None else causal & (slots[:, None] - slots[None, :] < 3)
        allowed = valid[:, None, :] & allowed[None]
        run = jax.jit(functools.partial(attend, scale=0.3), static_argnames="implementation")
        ref = run(q, k, v, allowed, implementation="reference")
        xla = run(q, k, v, allowed, implementation="xla")
        auto = run(q, k, v, allowed, implementation="auto")
        real = np.asarray(valid)
        np.testing.assert_allclose(np.asarray(xla)[real], np.asarray(ref)[real], atol=1e-6)
        np.testing.assert_array_equal(auto, xla)
        assert np.isfinite(np.asarray(xla)).all()


def test_model_attention_choices_agree_and_softcap_needs_the_reference():
    ref = llm.from_pretrained(GOLDEN / "mistral", attention="reference")
    xla = llm.from_pretrained(GOLDEN / "mistral", attention="xla")
    real = np.asarray(MASK).astype(bool)
    np.testing.assert_allclose(
        np.asarray(xla(IDS, MASK))[real], np.asarray(ref(IDS, MASK))[real], atol=2e-5
    )
    q, k, v = _random_qkv(jax.random.key(1))
    allowed = jnp.ones((2, 7, 7), bool)
    capped = attend(q, k, v, allowed, softcap=0.5)  # auto falls back to the reference path
    scores = np.einsum("blhd,bshd->bhls", q, np.repeat(k, 2, axis=2)) / np.sqrt(8)
    probs = np.exp(0.5 * np.tanh(scores / 0.5))
    probs /= probs.sum(-1, keepdims=True)
    expected = np.einsum("bhls,bshd->blhd", probs, np.repeat(v, 2, axis=2)).reshape(2, 7, 32)
    np.testing.assert_allclose(capped, expected, atol=1e-5)
    with pytest.raises(ValueError, match="'xla' has no soft-capping"):
        attend(q, k, v, allowed, softcap=0.5, implementation="xla")
