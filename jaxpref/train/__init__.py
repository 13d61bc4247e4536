"""Training: the LLM trainers (SFT, reward model, DPO) on one orchestrator, plus the generic
pieces they stand on (device mesh, jitted sharded steps, Orbax checkpoints).

The only stateful layer of jaxpref, and the only place where language models meet the math: a
recipe turns models and a batch into log-probs or rewards with ``jaxpref.llm`` and hands them to
the pure losses of ``jaxpref.losses``. ``train(config)`` runs a recipe end to end; the same config
dataclasses drive the ``jaxpref train`` command.
"""

from jaxpref.train.checkpoint import (
    CheckpointCorruptError,
    Checkpointer,
    CheckpointExistsError,
)
from jaxpref.train.config import (
    ActiveDPOConfig,
    DPOConfig,
    OnlineDPOConfig,
    PbPOConfig,
    RewardConfig,
    RLHFConfig,
    SFTConfig,
    TrainConfig,
)
from jaxpref.train.fit import (
    FitResult,
    Interrupted,
    NonFiniteError,
    Trainable,
    Trainer,
    make_optimizer,
)
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
from jaxpref.train.run import TrainResult, reference_mode, train
from jaxpref.train.run_dir import RunDirError
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
    "CheckpointCorruptError",
    "Checkpointer",
    "DPOConfig",
    "FitResult",
    "Interrupted",
    "NonFiniteError",
    "OnlineDPOConfig",
    "PbPOConfig",
    "ActiveDPOConfig",
    "RLHFConfig",
    "RewardConfig",
    "RunDirError",
    "SFTConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainable",
    "Trainer",
    "abstract_state",
    "abstract_train_state",
    "batch_sharding",
    "check_divisible",
    "create_train_state",
    "init_train_state",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "merge_model",
    "named_sharding",
    "reference_mode",
    "replicated",
    "restore_or_init",
    "shard_batch",
    "state_shardings",
    "step_key",
    "train",
    "train_loop",
]
