"""Flax NNX language models with Hugging Face weights: exact log-probs, KV-cache generation,
LoRA and mesh sharding.

Typical use::

    from jaxpref import llm
    model = llm.from_pretrained("path/to/hf_dir", mesh=mesh)      # any of llm.MODEL_TYPES
    rm = llm.reward_model_from_pretrained("path/to/reward_dir")   # *ForSequenceClassification
    summed, per_token = llm.sequence_logps(model, ids, mask, response_mask)
    phi = llm.sequence_features(model, ids, mask)                   # (B, E) float32
    out = llm.generate(model, prompts, prompt_mask, key=key, max_new_tokens=64)
"""

from jaxpref.llm.config import (
    MODEL_TYPES,
    DecoderConfig,
    GenerationConfig,
    RopeConfig,
    load_config,
    load_generation_config,
)
from jaxpref.llm.features import (
    POOLINGS,
    bucketed_features_and_logps,
    features_and_logps,
    pair_features_and_logps,
    pair_offsets,
    sequence_features,
)
from jaxpref.llm.generate import GenerationOutput, generate, sample_logits
from jaxpref.llm.hf_io import from_pretrained, save_pretrained
from jaxpref.llm.hf_map import param_map
from jaxpref.llm.layers import ATTENTION_IMPLS
from jaxpref.llm.logps import check_loss_mask, sequence_logps, token_logps
from jaxpref.llm.lora import (
    LoRAConfig,
    LoRAParam,
    apply_lora,
    merge_lora,
    perturb_adapters,
    unmerge_lora,
    without_adapters,
)
from jaxpref.llm.model import REMAT_POLICIES, Decoder, KVCache, create_model, position_ids
from jaxpref.llm.reward import (
    RewardModel,
    last_token_index,
    reward_model_from_pretrained,
    save_reward_model,
)
from jaxpref.llm.sharding import LOGICAL_RULES, constrain, logical_to_spec, shard_model

__all__ = [
    "ATTENTION_IMPLS",
    "LOGICAL_RULES",
    "MODEL_TYPES",
    "POOLINGS",
    "REMAT_POLICIES",
    "Decoder",
    "DecoderConfig",
    "GenerationConfig",
    "GenerationOutput",
    "KVCache",
    "LoRAConfig",
    "LoRAParam",
    "RewardModel",
    "RopeConfig",
    "apply_lora",
    "bucketed_features_and_logps",
    "check_loss_mask",
    "constrain",
    "create_model",
    "features_and_logps",
    "from_pretrained",
    "generate",
    "last_token_index",
    "load_config",
    "load_generation_config",
    "logical_to_spec",
    "merge_lora",
    "pair_features_and_logps",
    "pair_offsets",
    "param_map",
    "perturb_adapters",
    "position_ids",
    "reward_model_from_pretrained",
    "sample_logits",
    "save_pretrained",
    "save_reward_model",
    "sequence_features",
    "sequence_logps",
    "shard_model",
    "token_logps",
    "unmerge_lora",
    "without_adapters",
]
