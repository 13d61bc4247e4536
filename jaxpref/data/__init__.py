"""Preference data: HF ``datasets`` loaders, HH dialogue splitting, tokenisation, synthetic pairs.

Ships the Anthropic HH-RLHF harmless-base test split (``hh_rlhf/``, MIT licence) and a small
byte-level BPE tokenizer trained on it (``tokenizer/``, made by ``scripts/train_tokenizer.py``).
"""

from pathlib import Path

from jaxpref.data.preferences import (
    HH_RLHF_FILE,
    MalformedPair,
    PreferenceData,
    PreferencePair,
    dialogue_messages,
    load_hh_rlhf,
    load_preference_dataset,
    make_pair,
    pairs_from_rows,
    split_dialogue,
)
from jaxpref.data.synthetic import (
    SyntheticPreferences,
    synthetic_dialogue_rows,
    synthetic_preferences,
)
from jaxpref.data.tokenize import (
    EncodedPair,
    PreferenceBatch,
    TokenBatch,
    collate_preferences,
    collate_sequences,
    encode_pair,
    tokenize_preferences,
)

TOKENIZER_DIR = Path(__file__).parent / "tokenizer"


def load_tokenizer(path: str | Path = TOKENIZER_DIR):
    """``transformers.AutoTokenizer`` from a local directory (the shipped HH BPE by default)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


__all__ = [
    "HH_RLHF_FILE",
    "TOKENIZER_DIR",
    "EncodedPair",
    "MalformedPair",
    "PreferenceBatch",
    "PreferenceData",
    "PreferencePair",
    "SyntheticPreferences",
    "TokenBatch",
    "collate_preferences",
    "collate_sequences",
    "dialogue_messages",
    "encode_pair",
    "load_hh_rlhf",
    "load_preference_dataset",
    "load_tokenizer",
    "make_pair",
    "pairs_from_rows",
    "split_dialogue",
    "synthetic_dialogue_rows",
    "synthetic_preferences",
    "tokenize_preferences",
]
