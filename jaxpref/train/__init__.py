"""Training infrastructure: device mesh, generic jitted NNX/optax steps, Orbax checkpoints, loop.

The only stateful layer of jaxpref. Everything here is generic over a Flax NNX module and an
optax transformation: a loss is ``loss_fn(model, batch, key)``, nothing model-specific.
"""

from jaxpref.train.checkpoint import Checkpointer, CheckpointExistsError
from jaxpref.train.loop import restore_or_init, train_loop
from jaxpref.train.mesh import (
    AXES,
    BATCH_AXES,
    batch_sharding,
    check_divisible,
    make_mesh,
    named_sharding,
    replicated,
    shard_batch,
)
from jaxpref.train.steps import (
    TrainState,
    abstract_state,
    abstract_train_state,
    create_train_state,
    init_train_state,
    make_train_step,
    merge_model,
    state_shardings,
    step_key,
)

__all__ = [
    "AXES",
    "BATCH_AXES",
    "CheckpointExistsError",
    "Checkpointer",
    "TrainState",
    "abstract_state",
    "abstract_train_state",
    "batch_sharding",
    "check_divisible",
    "create_train_state",
    "init_train_state",
    "make_mesh",
    "make_train_step",
    "merge_model",
    "named_sharding",
    "replicated",
    "restore_or_init",
    "shard_batch",
    "state_shardings",
    "step_key",
    "train_loop",
]
