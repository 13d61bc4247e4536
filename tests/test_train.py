"""Generic NNX/optax train step, Orbax checkpoints, restore onto another mesh, kill-and-resume.

Run as a script (``python tests/test_train.py WORKER DIR``) this file is the training process
that the kill-and-resume test starts and SIGKILLs mid-run.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxpref.train import (
    Checkpointer,
    CheckpointExistsError,
    abstract_state,
    create_train_state,
    init_train_state,
    make_mesh,
    make_train_step,
    merge_model,
    restore_or_init,
    shard_batch,
    state_shardings,
    train_loop,
)

D_IN, D_HIDDEN, D_OUT, BATCH, TOTAL_STEPS, SAVE_EVERY, KILL_AT = 4, 8, 2, 8, 8, 2, 5


class TinyNet(nnx.Module):
    """Two sharded linear layers, a frozen scale and an in-place call counter."""

    def __init__(self, rngs: nnx.Rngs, dtype=jnp.float32):
        init = nnx.initializers.lecun_normal()
        kw = {"rngs": rngs, "param_dtype": dtype, "dtype": dtype}
        self.l1 = nnx.Linear(
            D_IN, D_HIDDEN, **kw, kernel_init=nnx.with_partitioning(init, ("fsdp", "tensor"))
        )
        self.l2 = nnx.Linear(
            D_HIDDEN, D_OUT, **kw, kernel_init=nnx.with_partitioning(init, ("tensor", None))
        )
        self.scale = nnx.Variable(jnp.full((), 0.5, dtype))  # not a Param: never trained
        self.calls = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x):
        self.calls[...] += 1
        return self.scale[...] * self.l2(jax.nn.tanh(self.l1(x)))


def make_model():
    return TinyNet(nnx.Rngs(0))


def noisy_loss(model, batch, key):
    """Squared error on inputs jittered with the step key (so resume must reproduce keys)."""
    x = batch["x"] + 0.1 * jax.random.normal(key, batch["x"].shape, batch["x"].dtype)
    return jnp.mean((model(x) - batch["y"]) ** 2)


def batch_at(step, mesh=None):
    rng = np.random.default_rng(1000 + step)
    batch = {
        "x": rng.normal(size=(BATCH, D_IN)).astype(np.float32),
        "y": rng.normal(size=(BATCH, D_OUT)).astype(np.float32),
    }
    return batch if mesh is None else shard_batch(batch, mesh)


def setup(mesh, tx=None):
    tx = optax.adam(1e-2) if tx is None else tx
    graphdef, state, shardings = create_train_state(make_model, tx, jax.random.key(7), mesh=mesh)
    step = make_train_step(
        graphdef,
        tx,
        noisy_loss,
        state_shardings=shardings,
        batch_shardings=jax.sharding.NamedSharding(mesh, P(("data", "fsdp"))),
    )
    return graphdef, state, shardings, step


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)
    )


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(2, 2, 2)


@pytest.fixture(scope="module")
def uninterrupted(mesh):
    """Reference: TOTAL_STEPS steps without checkpoints."""
    _, state, _, step = setup(mesh)
    with jax.set_mesh(mesh):
        return train_loop(step, state, lambda s: batch_at(s, mesh), num_steps=TOTAL_STEPS)


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_step_equals_hand_computed_sgd_and_counts(dtype, rtol):
    model = make_model_single(dtype)
    tx = optax.sgd(0.1)
    graphdef, state = init_train_state(model, tx, jax.random.key(0))
    x, y = jnp.ones((3, D_IN), dtype), jnp.zeros((3, D_OUT), dtype)

    def loss(m, batch, key):
        return jnp.mean((m(batch[0]) - batch[1]) ** 2)

    def reference(w1, b1, w2, b2):  # the same loss written on raw arrays, float64
        return jnp.mean((0.5 * (jnp.tanh(x @ w1 + b1[None]) @ w2 + b2[None]) - y) ** 2)

    raw = [
        np.asarray(v, np.float64)
        for v in (
            model.l1.kernel[...],
            model.l1.bias[...],
            model.l2.kernel[...],
            model.l2.bias[...],
        )
    ]
    grads = jax.grad(reference, argnums=(0, 1, 2, 3))(*raw)
    new, metrics = make_train_step(graphdef, tx, loss)(state, (x, y))
    got = merge_model(graphdef, new)
    for p, g, v in zip(raw, grads, (got.l1.kernel, got.l1.bias, got.l2.kernel, got.l2.bias)):
        assert v[...].dtype == dtype
        np.testing.assert_allclose(v[...], p - 0.1 * g, rtol=rtol, atol=rtol)
    counters = (int(new.step), int(new.rest["calls"][...]), float(new.rest["scale"][...]))
    assert counters == (1, 1, 0.5)
    assert metrics["loss"].dtype == dtype
    np.testing.assert_allclose(metrics["loss"], reference(*raw), rtol=rtol)


def make_model_single(dtype=jnp.float32):
    with jax.set_mesh(make_mesh(devices=jax.devices()[:1])):
        return TinyNet(nnx.Rngs(0), dtype)


def test_optimizer_counter_and_in_place_updates_advance(mesh, uninterrupted):
    state = uninterrupted
    assert int(state.step) == TOTAL_STEPS
    assert int(state.opt_state[0].count) == TOTAL_STEPS  # optax's own Adam counter
    assert int(state.rest["calls"][...]) == TOTAL_STEPS  # NNX in-place mutation kept
    _, fresh, _, _ = setup(mesh)
    assert not np.array_equal(fresh.params["l1"]["kernel"][...], state.params["l1"]["kernel"][...])


def test_wrt_filter_trains_only_selected_variables():
    model = make_model_single()
    tx = optax.sgd(0.1)
    graphdef, state = init_train_state(model, tx, jax.random.key(0), wrt=nnx.PathContains("l2"))
    l1, l2 = np.asarray(model.l1.kernel[...]), np.asarray(model.l2.kernel[...])
    new, _ = make_train_step(graphdef, tx, noisy_loss)(state, batch_at(0))  # donates `state`
    assert set(new.params) == {"l2"}
    np.testing.assert_array_equal(new.rest["l1"]["kernel"][...], l1)
    assert not np.array_equal(new.params["l2"]["kernel"][...], l2)


def test_params_really_sharded_and_match_single_device(mesh, uninterrupted):
    kernel = uninterrupted.params["l1"]["kernel"][...]
    assert kernel.sharding.spec == P("fsdp", "tensor")
    assert {s.data.shape for s in kernel.addressable_shards} == {(D_IN // 2, D_HIDDEN // 2)}
    mu = uninterrupted.opt_state[0].mu["l1"]["kernel"][...]
    assert mu.sharding.spec == P("fsdp", "tensor")  # optimizer state sharded like its param
    one = make_mesh(devices=jax.devices()[:1])
    _, state, _, step = setup(one)
    with jax.set_mesh(one):
        single = train_loop(step, state, lambda s: batch_at(s, one), num_steps=TOTAL_STEPS)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(uninterrupted.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_mesh_that_does_not_divide_a_parameter_is_named():
    with pytest.raises(
        ValueError,
        match=r"\['l1'\]\['kernel'\]: dimension 0 of size 4 is not "
        r"divisible by mesh axes \('fsdp',\) of total size 8",
    ):
        setup(make_mesh(1, 8, 1))


def test_step_compiles_once(mesh):
    _, state, _, step = setup(mesh)
    with jax.set_mesh(mesh):
        train_loop(step, state, lambda s: batch_at(s, mesh), num_steps=3)
    assert step._cache_size() == 1


def test_checkpoint_round_trip_and_no_overwrite(mesh, uninterrupted, tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        ckpt.save(uninterrupted)
        with pytest.raises(CheckpointExistsError, match=f"step {TOTAL_STEPS} already exists"):
            ckpt.save(uninterrupted)
        ckpt.wait()
        target = abstract_state(uninterrupted, state_shardings(uninterrupted, mesh))
        restored = ckpt.restore(target)
    assert leaves_equal(restored, uninterrupted)  # params, rest, opt state, step, rng
    assert int(restored.step) == TOTAL_STEPS
    np.testing.assert_array_equal(restored.rng, jax.random.key_data(jax.random.key(7)))
    assert type(restored.params) is type(uninterrupted.params)


def test_keep_last_n_and_missing_steps(mesh, uninterrupted, tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        with pytest.raises(FileNotFoundError, match="no checkpoint in"):
            ckpt.restore(uninterrupted)
        for s in (1, 2, 3):
            ckpt.save(uninterrupted, step=s)
        ckpt.wait()
        assert ckpt.all_steps() == [2, 3]
        with pytest.raises(FileNotFoundError, match=r"step 1 .* \(have \[2, 3\]\)"):
            ckpt.restore(uninterrupted, step=1)
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path / "x", max_to_keep=0)


def test_restore_onto_a_different_mesh(mesh, uninterrupted, tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(uninterrupted)
        ckpt.wait()
        other = make_mesh(1, 4, 2)
        _, fresh, shardings, step = setup(other)
        restored = ckpt.restore(abstract_state(fresh, shardings))
    kernel = restored.params["l1"]["kernel"][...]
    assert kernel.sharding.mesh.shape == other.shape
    assert {s.data.shape for s in kernel.addressable_shards} == {(D_IN // 4, D_HIDDEN // 2)}
    assert leaves_equal(restored, uninterrupted)
    with jax.set_mesh(other):
        more, _ = step(restored, batch_at(TOTAL_STEPS, other))
    assert int(more.step) == TOTAL_STEPS + 1 and int(more.opt_state[0].count) == TOTAL_STEPS + 1


def run_worker(directory):
    """Training process for the kill test: checkpoints every SAVE_EVERY steps, SIGKILLs itself."""
    mesh = make_mesh(2, 2, 2)
    _, state, _, step = setup(mesh)

    def die(s, _):
        if s == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, pending async write abandoned

    ckpt = Checkpointer(directory, max_to_keep=2)
    with jax.set_mesh(mesh):
        train_loop(
            step,
            state,
            lambda s: batch_at(s, mesh),
            num_steps=TOTAL_STEPS,
            checkpointer=ckpt,
            save_every=SAVE_EVERY,
            on_step=die,
        )


def test_kill_and_resume_is_bit_identical(mesh, uninterrupted, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, __file__, "WORKER", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    _, fresh, shardings, step = setup(mesh)
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        resumed_from = ckpt.latest_step()
        assert resumed_from in (SAVE_EVERY, 2 * SAVE_EVERY)  # step 4 only if its write finished
        state = restore_or_init(ckpt, fresh, abstract_state(fresh, shardings))
        assert int(state.step) == resumed_from
        with jax.set_mesh(mesh):
            final = train_loop(
                step,
                state,
                lambda s: batch_at(s, mesh),
                num_steps=TOTAL_STEPS,
                checkpointer=ckpt,
                save_every=SAVE_EVERY,
            )
        ckpt.wait()
        assert ckpt.latest_step() == TOTAL_STEPS
    assert leaves_equal(final, uninterrupted)


if __name__ == "__main__" and sys.argv[1:2] == ["WORKER"]:
    jax.config.update("jax_num_cpu_devices", 8)  # the same configuration as tests/conftest.py
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    run_worker(Path(sys.argv[2]))
