"""Sharded models on 8 simulated CPU devices: placement follows the rules table, parameters are
really split, forward and gradients equal the single-device ones, an optax step advances."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpref.llm import DecoderConfig
from jaxpref.llm.generate import generate
from jaxpref.llm.hf_io import from_pretrained
from jaxpref.llm.logps import sequence_logps
from jaxpref.llm.model import create_model
from jaxpref.llm.sharding import LOGICAL_RULES, logical_to_spec, shard_model

GOLDEN = pathlib.Path(__file__).parent / "golden"
CONFIG = DecoderConfig.tiny("llama", tie_word_embeddings=False)


def make_mesh(shape=(2, 2, 2)):
    return jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh()


@pytest.fixture(scope="module")
def pair(mesh):
    """The same weights sharded over the mesh and on one device."""
    sharded = create_model(CONFIG, seed=3, mesh=mesh)
    graphdef, state = nnx.split(sharded)
    single = jax.device_put(state, jax.devices()[0])
    return sharded, nnx.merge(graphdef, single)


def batch(mesh=None):
    ids = jax.random.randint(jax.random.key(0), (4, 6), 0, CONFIG.vocab_size)
    mask = jnp.array([[0, 0, 1, 1, 1, 1], [1] * 6, [1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]])
    loss = mask.at[:, :3].set(0)
    arrays = (ids, mask, loss)
    if mesh is not None:
        arrays = jax.device_put(arrays, NamedSharding(mesh, P(("data", "fsdp"))))
    return arrays


def loss_fn(model, ids, mask, loss):
    summed, _ = sequence_logps(model, ids, mask, loss)
    return -summed.mean()


def test_rules_table_specs_and_per_device_bytes(pair):
    sharded, _ = pair
    expected = [
        (sharded.embed.embedding, P("tensor", "fsdp")),
        (sharded.layers[0].attn.q_proj.kernel, P("fsdp", "tensor")),
        (sharded.layers[0].attn.k_proj.kernel, P("fsdp", "tensor")),
        (sharded.layers[0].attn.o_proj.kernel, P("tensor", "fsdp")),
        (sharded.layers[1].mlp.down_proj.kernel, P("tensor", "fsdp")),
        (sharded.lm_head.kernel, P("fsdp", "tensor")),
        (sharded.final_norm.weight, P(None)),
    ]
    for var, spec in expected:
        array = var[...]
        assert array.sharding.spec == spec
        split = 1 if spec == P(None) else 4  # fsdp × tensor
        assert array.addressable_shards[0].data.nbytes * split == array.nbytes
        assert len(array.addressable_shards) == 8
    assert logical_to_spec(("batch", "length", "act_heads")) == P(("data", "fsdp"), None, "tensor")
    assert set(LOGICAL_RULES) >= {"batch", "embed", "heads", "kv_heads", "mlp", "vocab"}


def test_sharded_forward_and_gradients_equal_single_device(pair, mesh):
    sharded, single = pair
    grad_fn = nnx.jit(nnx.value_and_grad(loss_fn))
    with jax.set_mesh(mesh):
        loss_s, grads_s = grad_fn(sharded, *batch(mesh))
        logits_s = nnx.jit(lambda m, i, a: m(i, a))(sharded, *batch(mesh)[:2])
    loss_1, grads_1 = grad_fn(single, *batch())
    logits_1 = single(*batch()[:2])
    assert logits_s.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_allclose(logits_s, logits_1, atol=1e-5)
    np.testing.assert_allclose(loss_s, loss_1, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads_s, grads_1)


def test_optax_step_advances_and_keeps_sharding(pair, mesh):
    sharded, _ = pair
    graphdef, state = nnx.split(sharded)
    model = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))  # leave the fixture untouched
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    before = np.asarray(model.layers[0].attn.q_proj.kernel[...])

    @nnx.jit
    def step(model, optimizer, ids, mask, loss):
        value, grads = nnx.value_and_grad(loss_fn)(model, ids, mask, loss)
        optimizer.update(model, grads)
        return value

    with jax.set_mesh(mesh):
        first = step(model, optimizer, *batch(mesh))
        second = step(model, optimizer, *batch(mesh))
    assert int(optimizer.step[...]) == 2
    assert float(second) < float(first)
    after = model.layers[0].attn.q_proj.kernel[...]
    assert not np.allclose(before, after)
    assert after.sharding.spec == P("fsdp", "tensor")


def test_pure_step_with_explicit_shardings_and_donation(pair, mesh):
    """The split/merge recipe: a pure jitted step with in/out shardings and donated state."""
    sharded, _ = pair
    graphdef, state = nnx.split(sharded)
    state = jax.tree.map(jnp.copy, state)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    data = NamedSharding(mesh, P(("data", "fsdp")))

    def sgd(state, ids, mask, loss):
        grads = jax.grad(lambda s: loss_fn(nnx.merge(graphdef, s), ids, mask, loss))(state)
        return jax.tree.map(lambda p, g: p - 0.1 * g, state, grads)

    step = jax.jit(
        sgd, in_shardings=(shardings, data, data, data), out_shardings=shardings, donate_argnums=0
    )
    old = np.asarray(state["embed"]["embedding"][...])
    with jax.set_mesh(mesh):
        new = step(state, *batch(mesh))
    assert not np.allclose(old, new["embed"]["embedding"][...])
    assert new["embed"]["embedding"][...].sharding.spec == P("tensor", "fsdp")


@pytest.mark.parametrize("family", ["llama3", "gpt2"])
def test_from_pretrained_onto_mesh_places_each_tensor(mesh, family):
    model = from_pretrained(GOLDEN / family, mesh=mesh)
    kernel = model.layers[0].attn.v_proj.kernel[...]  # GPT-2: a slice of the fused c_attn
    assert kernel.sharding.spec == P("fsdp", "tensor")
    reference = from_pretrained(GOLDEN / family)
    np.testing.assert_array_equal(kernel, reference.layers[0].attn.v_proj.kernel[...])
    ids = jnp.arange(8)[None] % 96
    ids = jnp.concatenate([ids] * 4)
    with jax.set_mesh(mesh):
        out = nnx.jit(lambda m, i: m(i))(model, ids)
    np.testing.assert_allclose(out, reference(ids), atol=1e-5)


def test_mesh_that_does_not_divide_names_the_axis(mesh):
    bad = DecoderConfig.tiny("llama", vocab_size=97)
    with pytest.raises(
        ValueError,
        match=r"embed.embedding dimension 0 \(logical axis 'vocab', "
        r"size 97\) is not divisible by mesh axes \('tensor',\)",
    ):
        create_model(bad, mesh=mesh)
    model = create_model(bad)
    with pytest.raises(ValueError, match="vocab"):
        shard_model(model, mesh)
    wide = make_mesh((1, 1, 8))
    with pytest.raises(
        ValueError,
        match=r"k_proj.kernel dimension 1 \(logical axis 'kv_heads', "
        r"size 4\) is not divisible by mesh axes \('tensor',\) "
        r"of total size 8",
    ):
        create_model(DecoderConfig.tiny("llama", num_kv_heads=1, head_dim=4), mesh=wide)


def test_shard_model_in_place(mesh):
    model = create_model(CONFIG, seed=1)
    shard_model(model, mesh)
    assert model.layers[0].mlp.up_proj.kernel[...].sharding.spec == P("fsdp", "tensor")


def test_greedy_generation_on_the_mesh_matches_single_device(pair, mesh):
    sharded, single = pair
    ids, mask, _ = batch()
    kw = dict(key=jax.random.key(0), max_new_tokens=3, temperature=0.0, bucket=8)
    with jax.set_mesh(mesh):
        out = generate(sharded, ids, mask, **kw)
    np.testing.assert_array_equal(out.new_tokens, generate(single, ids, mask, **kw).new_tokens)


def test_scan_layers_model_on_the_mesh(mesh):
    """Stacked parameters shard like their per-layer form with a replicated layer axis, both
    when created inside jit and when loaded from HF files; forward equals the single device."""
    model = create_model(CONFIG, seed=3, mesh=mesh, scan_layers=True, remat="block")
    assert model.layers.attn.q_proj.kernel[...].sharding.spec == P(None, "fsdp", "tensor")
    assert model.layers.mlp.down_proj.kernel[...].sharding.spec == P(None, "tensor", "fsdp")
    loaded = from_pretrained(GOLDEN / "llama3", mesh=mesh, scan_layers=True)
    kernel = loaded.layers.attn.v_proj.kernel[...]
    assert kernel.sharding.spec == P(None, "fsdp", "tensor") and kernel.shape == (2, 32, 16)
    reference = from_pretrained(GOLDEN / "llama3")
    np.testing.assert_array_equal(kernel[1], reference.layers[1].attn.v_proj.kernel[...])
    ids, mask, loss = batch(mesh)
    with jax.set_mesh(mesh):
        out = nnx.jit(lambda m, i, a: m(i, a))(loaded, ids, mask)
        value, _ = nnx.jit(nnx.value_and_grad(loss_fn))(loaded, ids, mask, loss)
    # float32 round-off of the sharded contractions (another summation order), logits up to ~3
    np.testing.assert_allclose(out, reference(*batch()[:2]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, loss_fn(reference, *batch()), rtol=1e-5)
