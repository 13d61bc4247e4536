"""Mesh construction and sharding checks on 8 simulated CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from jaxpref.train import (
    AXES,
    batch_sharding,
    check_divisible,
    make_mesh,
    named_sharding,
    shard_batch,
)
from jaxpref.train.mesh import resolve_mesh_shape


def test_make_mesh_axes_are_auto():
    mesh = make_mesh(2, 2, 2)
    assert mesh.axis_names == AXES
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh.axis_types == (AxisType.Auto,) * 3


def test_make_mesh_fills_minus_one_and_subsets():
    assert dict(make_mesh(-1, 1, 2).shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    assert dict(make_mesh(devices=jax.devices()[:1]).shape) == {"data": 1, "fsdp": 1, "tensor": 1}


@pytest.mark.parametrize(
    "sizes, match",
    [
        ((3, 1, 1), r"mesh: data=3 x fsdp=1 x tensor=1 = 3 != 8 devices"),
        ((-1, 3, 1), r"data: cannot fill -1, 8 devices are not divisible"),
        ((-1, -1, 1), r"data, fsdp: at most one mesh axis may be -1"),
        ((0, 8, 1), r"data: mesh axis size must be a positive int"),
        ((2.0, 4, 1), r"data: mesh axis size must be a positive int"),
    ],
)
def test_make_mesh_errors(sizes, match):
    with pytest.raises(ValueError, match=match):
        make_mesh(*sizes)


def test_resolve_mesh_shape_exact():
    assert resolve_mesh_shape({"a": 2, "b": -1}, 8) == (2, 4)


def test_check_divisible_names_tensor_and_axis():
    mesh = make_mesh(2, 2, 2)
    check_divisible("w", (4, 6), P("fsdp", "tensor"), mesh)
    check_divisible("w", (8, 3), P(("data", "fsdp")), mesh)
    with pytest.raises(
        ValueError,
        match=r"w: dimension 1 of size 3 is not divisible by mesh axes "
        r"\('tensor',\) of total size 2",
    ):
        check_divisible("w", (4, 3), P("fsdp", "tensor"), mesh)
    with pytest.raises(
        ValueError,
        match=r"x: dimension 0 of size 6 .* \('data', 'fsdp'\) of "
        r"total size 4",
    ):
        named_sharding(mesh, P(("data", "fsdp")), name="x", shape=(6,))
    with pytest.raises(ValueError, match="w: unknown mesh axis 'model'"):
        check_divisible("w", (4,), P("model"), mesh)
    with pytest.raises(ValueError, match="more entries than shape"):
        check_divisible("w", (4,), P("data", None), mesh)


def test_shard_batch_splits_leading_dim():
    mesh = make_mesh(2, 2, 2)
    batch = shard_batch({"ids": jnp.arange(16).reshape(8, 2)}, mesh)
    assert batch["ids"].sharding == batch_sharding(mesh)
    assert {s.data.shape for s in batch["ids"].addressable_shards} == {(2, 2)}
    np.testing.assert_array_equal(batch["ids"], np.arange(16).reshape(8, 2))
    with pytest.raises(ValueError, match=r"batch\['ids'\]: dimension 0 of size 6"):
        shard_batch({"ids": jnp.zeros((6, 2))}, mesh)
