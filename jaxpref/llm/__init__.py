"""Flax NNX language models with Hugging Face weights: exact log-probs, KV-cache generation,
LoRA and mesh sharding.

Typical use::

    from jaxpref import llm
    model = llm.from_pretrained("path/to/hf_dir", mesh=mesh)      # Llama/Qwen2/Mistral/GPT-2
    rm = llm.reward_model_from_pretrained("path/to/reward_dir")   # *ForSequenceClassification
    summed, per_token = llm.sequence_logps(model, ids, mask, response_mask)
    out = llm.generate(model, prompts, prompt_mask, key=key, max_new_tokens=64)
"""

from jaxpref.llm.config import DecoderConfig, RopeConfig, load_config
from jaxpref.llm.generate import GenerationOutput, generate, sample_logits
from jaxpref.llm.hf_io import from_pretrained, save_pretrained
from jaxpref.llm.logps import sequence_logps, token_logps
from jaxpref.llm.lora import (
    LoRAConfig,
    LoRAParam,
    apply_lora,
    merge_lora,
    unmerge_lora,
    without_adapters,
)
from jaxpref.llm.model import Decoder, KVCache, create_model, position_ids
from jaxpref.llm.reward import (
    RewardModel,
    last_token_index,
    reward_model_from_pretrained,
    save_reward_model,
)
from jaxpref.llm.sharding import LOGICAL_RULES, constrain, logical_to_spec, shard_model

__all__ = [
    "LOGICAL_RULES",
    "Decoder",
    "DecoderConfig",
    "GenerationOutput",
    "KVCache",
    "LoRAConfig",
    "LoRAParam",
    "RewardModel",
    "RopeConfig",
    "apply_lora",
    "constrain",
    "create_model",
    "from_pretrained",
    "generate",
    "last_token_index",
    "load_config",
    "logical_to_spec",
    "merge_lora",
    "position_ids",
    "reward_model_from_pretrained",
    "sample_logits",
    "save_pretrained",
    "save_reward_model",
    "sequence_logps",
    "shard_model",
    "token_logps",
    "unmerge_lora",
    "without_adapters",
]
