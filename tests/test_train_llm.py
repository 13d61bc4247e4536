"""The generic train step and checkpoints driving a tiny jaxpref Llama on real HH pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxpref.data import load_hh_rlhf, load_tokenizer, tokenize_preferences
from jaxpref.train import (
    Checkpointer,
    abstract_train_state,
    create_train_state,
    make_mesh,
    make_train_step,
    shard_batch,
    train_loop,
)

llm = pytest.importorskip("jaxpref.llm")
from jaxpref.llm.logps import sequence_logps  # noqa: E402
from jaxpref.llm.sharding import variable_spec  # noqa: E402

STEPS = 3


def margin_loss(model, batch, key):
    """-log σ(log π(y_w|x) − log π(y_l|x)) on stacked chosen/rejected rows (no reference)."""
    logps, _ = sequence_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    )
    chosen, rejected = jnp.split(logps, 2)
    return -jnp.mean(jax.nn.log_sigmoid(chosen - rejected))


@pytest.fixture(scope="module")
def hh_batch(tmp_path_factory):
    tok = load_tokenizer()
    pairs = load_hh_rlhf(cache_dir=str(tmp_path_factory.mktemp("hf"))).pairs[:4]
    b = tokenize_preferences(tok, pairs, max_length=32, max_prompt_length=16, length=32)
    return {
        k: np.concatenate([getattr(b.chosen, k), getattr(b.rejected, k)])
        for k in ("input_ids", "attention_mask", "loss_mask")
    }


def make_llama():
    config = llm.DecoderConfig.tiny(vocab_size=4096)
    return llm.Decoder(config, rngs=nnx.Rngs(0))


def train(mesh, batch):
    tx = optax.adam(1e-2)
    graphdef, state, shardings = create_train_state(
        make_llama, tx, jax.random.key(0), mesh=mesh, spec_fn=variable_spec
    )
    step = make_train_step(
        graphdef,
        tx,
        margin_loss,
        state_shardings=shardings,
        batch_shardings=jax.sharding.NamedSharding(mesh, P(("data", "fsdp"))),
    )
    losses = []
    with jax.set_mesh(mesh):
        state = train_loop(
            step,
            state,
            lambda s: shard_batch(batch, mesh),
            num_steps=STEPS,
            on_step=lambda s, m: losses.append(float(m["loss"])),
        )
    return state, shardings, losses


def test_tiny_llama_trains_sharded_and_restores_on_another_mesh(hh_batch, tmp_path):
    state, _, losses = train(make_mesh(2, 2, 2), hh_batch)
    assert int(state.step) == STEPS and int(state.opt_state[0].count) == STEPS
    assert losses[-1] < losses[0]
    embed = jax.tree.leaves(state.params["embed"])[0]
    assert embed.shape == (4096, 32) and embed.sharding.spec == P("tensor", "fsdp")
    assert {s.data.shape for s in embed.addressable_shards} == {(2048, 16)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state)
        ckpt.wait()
        other = make_mesh(1, 4, 2)
        tx = optax.adam(1e-2)
        _, target, _ = abstract_train_state(
            make_llama, tx, jax.random.key(0), mesh=other, spec_fn=variable_spec
        )
        restored = ckpt.restore(target)
    moved = jax.tree.leaves(restored.params["embed"])[0]
    assert {s.data.shape for s in moved.addressable_shards} == {(2048, 8)}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
