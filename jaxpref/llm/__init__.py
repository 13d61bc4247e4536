"""Flax NNX language models with Hugging Face weights: exact log-probs, KV-cache generation,
LoRA and mesh sharding."""

from jaxpref.llm.config import DecoderConfig, RopeConfig, load_config
from jaxpref.llm.model import Decoder, KVCache, position_ids

__all__ = ["Decoder", "DecoderConfig", "KVCache", "RopeConfig", "load_config", "position_ids"]
