"""Training checkpoints under corruption: a checksum of every saved array is verified on
restore; a flipped byte names the step, and the previous good step is used only on request."""

import itertools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref.train.checkpoint import (
    CHECKSUMS,
    CheckpointCorruptError,
    Checkpointer,
    array_digest,
)


def state(scale):
    return {
        "w": jnp.arange(4096, dtype=jnp.float32) * scale,
        "b": jnp.ones(3, jnp.bfloat16) * scale,
        "step": jnp.int32(scale),
        "rng": jax.random.key(scale),
    }


def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def flip_data_byte(directory, step):
    """Flip one bit in the middle of the largest data file of ``step`` (the array bytes)."""
    files = [p for p in (directory / str(step) / "state").rglob("*") if p.is_file()]
    big = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(big.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    big.write_bytes(bytes(raw))


@pytest.fixture
def two_steps(tmp_path):
    with Checkpointer(tmp_path, async_save=False) as ckpt:
        ckpt.save(state(1), step=1)
        ckpt.save(state(2), step=2)
    return tmp_path


def digest(x):
    return tuple(np.asarray(array_digest(x)).tolist())


@pytest.mark.parametrize(
    "x",
    [
        np.array([0.0, 1.5, -2.0], np.float32),
        np.array([1.0, 3.0], jnp.bfloat16),
        np.array([7, -1], np.int32),
        np.array([True, False]),
        np.array([3, 200], np.uint8),
        np.array([1.0, 2.0], np.float64),
    ],
)
def test_every_single_bit_flip_changes_the_digest(x):
    """Enumerate every bit of the array: each single flip gives a digest different from the
    original's and from every other flip's."""
    raw = np.frombuffer(x.tobytes(), np.uint8)
    seen = {digest(x)}
    for byte, bit in itertools.product(range(raw.size), range(8)):
        flipped = raw.copy()
        flipped[byte] ^= 1 << bit
        y = np.frombuffer(flipped.tobytes(), x.dtype).reshape(x.shape)
        if x.dtype == np.bool_ and bit > 0:
            continue  # a bool byte other than 0/1 is not a bool
        seen.add(digest(y))
    assert len(seen) == 1 + raw.size * (1 if x.dtype == np.bool_ else 8)


def test_digest_independent_of_sharding_and_sensitive_to_order():
    x = jnp.arange(64, dtype=jnp.float32).reshape(8, 8)
    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.P("d", None)))
    assert digest(sharded) == digest(x)
    assert digest(x.T) != digest(x)
    key = jax.random.key(3)
    assert digest(key) == digest(jax.random.key_data(key))


def test_restore_verified(two_steps):
    with Checkpointer(two_steps) as ckpt:
        got = ckpt.restore(abstract(state(0)))
    assert ckpt.restored_step == 2
    np.testing.assert_array_equal(got["w"], state(2)["w"])


def test_flipped_byte_names_the_step_and_falls_back_only_on_request(two_steps):
    flip_data_byte(two_steps, 2)
    with Checkpointer(two_steps) as ckpt:
        with pytest.raises(CheckpointCorruptError, match=r"step 2: .*checksum"):
            ckpt.restore(abstract(state(0)))
        with pytest.warns(RuntimeWarning, match=r"step 2: .*restored step 1 instead"):
            got = ckpt.restore(abstract(state(0)), fallback=True)
        assert ckpt.restored_step == 1
        np.testing.assert_array_equal(got["w"], state(1)["w"])
        assert int(got["step"]) == 1


def test_no_good_step_left(two_steps):
    flip_data_byte(two_steps, 1)
    flip_data_byte(two_steps, 2)
    with Checkpointer(two_steps) as ckpt:
        with pytest.raises(CheckpointCorruptError, match="no checkpoint up to step 2"):
            ckpt.restore(abstract(state(0)), fallback=True)


def test_step_without_checksums_restores_unverified(two_steps):
    """Checkpoints written before checksums existed still resume."""
    shutil.rmtree(two_steps / "2" / CHECKSUMS)
    with Checkpointer(two_steps) as ckpt:
        got = ckpt.restore(abstract(state(0)))
    np.testing.assert_array_equal(got["w"], state(2)["w"])
