"""Scalar reward models: a decoder backbone with a linear head on the last real token.

This is transformers' ``*ForSequenceClassification`` with ``num_labels = 1`` (``score.weight`` of
shape ``(1, hidden)``, no bias), the model TRL's reward trainer trains. The score of a row is
``score(h_T)`` with ``h_T`` the final-normed hidden state of its last real token. jaxpref finds
that token from the attention mask; transformers finds it as the last token that is not
``pad_token_id``: the two agree whenever the pad id appears only as padding, which is why
:func:`save_reward_model` refuses a config whose pad id is also its EOS id.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.llm.config import DecoderConfig, load_config
from jaxpref.llm.hf_config import ARCHITECTURES
from jaxpref.llm.hf_io import _Checkpoint, from_pretrained, save_pretrained
from jaxpref.llm.layers import Linear
from jaxpref.llm.model import Decoder
from jaxpref.llm.sharding import LOGICAL_RULES

SCORE = "score.weight"


def sequence_classification_class(model_type: str) -> str:
    """transformers' ``*ForSequenceClassification`` class name of a family."""
    causal = ARCHITECTURES[model_type]
    return (
        causal.removesuffix("ForCausalLM").removesuffix("LMHeadModel") + "ForSequenceClassification"
    )


def last_token_index(attention_mask_BxL):
    """(B,) index of each row's last real token (left or right padding)."""
    mask = attention_mask_BxL.astype(bool)
    positions = jnp.arange(mask.shape[1])
    return jnp.max(jnp.where(mask, positions, -1), axis=1).clip(0)


class RewardModel(nnx.Module):
    """``model(input_ids, attention_mask) -> (B,)`` float32 rewards."""

    def __init__(self, backbone: Decoder, *, rngs: nnx.Rngs, tie_word_embeddings: bool = False):
        if backbone.lm_head is not None:
            raise ValueError(
                "backbone: build it without an LM head (see reward_backbone_config); a reward "
                "model has none"
            )
        self.backbone = backbone
        self.tie_word_embeddings = tie_word_embeddings  # the source config's flag, written back
        width = backbone.config.embed_width  # OPT's head reads word_embed_proj_dim
        self.score = Linear(width, 1, ("embed", None), bias=False, dtype=backbone.dtype, rngs=rngs)

    def __call__(self, input_ids, attention_mask=None):
        mask = jnp.ones(input_ids.shape, bool) if attention_mask is None else attention_mask
        values_BxL = self.values(input_ids, mask)
        return jnp.take_along_axis(values_BxL, last_token_index(mask)[:, None], axis=1)[:, 0]

    def values(self, input_ids, attention_mask=None):
        """(B, L) the head at every position, float32: a critic's value of each prefix (the
        PPO critic starts from the reward model, as DeepSpeed-Chat's does)."""
        hidden_BxLxE = self.backbone.hidden_states(input_ids, attention_mask)
        out = self.score(hidden_BxLxE)[..., 0]
        return out.astype(jnp.promote_types(out.dtype, jnp.float32))


def reward_backbone_config(config: DecoderConfig) -> DecoderConfig:
    """The config of a backbone without an LM head (its tied flag only drops ``lm_head``)."""
    return dataclasses.replace(config, tie_word_embeddings=True)


def reward_model_from_pretrained(
    path, *, dtype=jnp.float32, mesh=None, rules=LOGICAL_RULES, seed: int = 0, **options
) -> RewardModel:
    """A reward model from a HF directory: a ``*ForSequenceClassification`` checkpoint (its
    ``score.weight`` is read) or a causal LM (the SFT model; the head starts as HF initialises
    it, N(0, 0.02²), and the LM head is not loaded). ``options`` (``param_dtype``, ``remat``,
    ``scan_layers``, ``attention``) go to :func:`~jaxpref.llm.from_pretrained`.
    """
    path = pathlib.Path(path)
    config = load_config(path)
    ckpt = _Checkpoint(path)
    has_score = SCORE in ckpt.names()
    labels = dict(config.hf_extra).get("id2label")
    if has_score and labels is not None and len(labels[1]) != 1:
        raise ValueError(f"{path}: num_labels must be 1 for a scalar reward model")
    backbone = from_pretrained(
        path,
        dtype=dtype,
        mesh=mesh,
        rules=rules,
        config=reward_backbone_config(config),
        ignore=(SCORE,) if has_score else (),
        **options,
    )
    model = RewardModel(
        backbone, rngs=nnx.Rngs(seed), tie_word_embeddings=config.tie_word_embeddings
    )
    if has_score:
        weight = np.asarray(ckpt.get(SCORE))
        if weight.shape != (1, config.embed_width):
            raise ValueError(
                f"checkpoint: tensor {SCORE!r} has shape {weight.shape}, expected "
                f"(1, {config.embed_width})"
            )
        model.score.kernel[...] = jnp.asarray(weight.T, dtype)
    if mesh is not None:
        from jaxpref.llm.sharding import shard_model

        shard_model(model, mesh, rules)
    return model


def save_reward_model(
    model: RewardModel, path, *, max_shard_bytes: int | None = None, overwrite: bool = False
) -> None:
    """Write a ``*ForSequenceClassification`` directory (``num_labels = 1``) transformers loads
    (atomically; an existing checkpoint only with ``overwrite``, as :func:`save_pretrained`)."""
    config = model.backbone.config
    if config.pad_token_id is None or config.pad_token_id == config.eos_token_id:
        raise ValueError(
            "config: pad_token_id must be set and differ from eos_token_id, or transformers "
            "would score a different token than jaxpref (it finds the last non-pad id)"
        )
    score = np.asarray(jax.device_get(model.score.kernel[...])).T  # (1, hidden)
    updates = {
        "architectures": [sequence_classification_class(config.model_type)],
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "tie_word_embeddings": model.tie_word_embeddings,
    }
    save_pretrained(
        model.backbone,
        path,
        max_shard_bytes=max_shard_bytes,
        extra_tensors={SCORE: score},
        config_updates=updates,
        overwrite=overwrite,
    )
