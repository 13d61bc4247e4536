"""Preference and SFT data: HF ``datasets`` sources, TRL row formats with a malformed-row report,
HH dialogue splitting, chat-template tokenisation with TRL's truncation, collation, synthetic pairs.

Ships the Anthropic HH-RLHF harmless-base test split (``hh_rlhf/``, MIT licence) and a small
byte-level BPE tokenizer trained on it (``tokenizer/``, made by ``scripts/train_tokenizer.py``).
"""

from pathlib import Path

from jaxpref.data.completions import (
    Completion,
    CompletionData,
    as_completion,
    completions_from_rows,
)
from jaxpref.data.feature_pairs import (
    LoggedFeedbackPool,
    class_points,
    difference_vectors,
    logged_feedback_pool,
)
from jaxpref.data.preferences import (
    HH_RLHF_FILE,
    MalformedPair,
    PreferenceData,
    PreferencePair,
    check_columns,
    dialogue_messages,
    make_pair,
    pairs_from_rows,
    row_to_pair,
    split_dialogue,
)
from jaxpref.data.sources import (
    check_hub_reachable,
    load_hh_rlhf,
    load_preference_dataset,
    load_splits,
    read_json_lines,
    split_rows,
)
from jaxpref.data.splits import shipped_hh_rows, write_splits
from jaxpref.data.synthetic import (
    SyntheticPreferences,
    synthetic_dialogue_rows,
    synthetic_preferences,
)
from jaxpref.data.tokenize import (
    EncodedCompletion,
    EncodedPair,
    PackedRow,
    PreferenceBatch,
    TokenBatch,
    TruncationReport,
    collate_preferences,
    collate_sequences,
    encode_completions,
    encode_pair,
    encode_preference_rows,
    encode_preferences,
    pack_completions,
    pad_id,
    tokenize_preferences,
)

TOKENIZER_DIR = Path(__file__).parent / "tokenizer"


def _transformers():
    """``transformers``, imported without its import-time advice ("PyTorch was not found…"),
    which says nothing about tokenizers, the only part jaxpref uses. Whoever sets
    ``TRANSFORMERS_VERBOSITY`` or ``TRANSFORMERS_NO_ADVISORY_WARNINGS`` keeps their choice."""
    import os
    import sys

    if "transformers" in sys.modules:
        return sys.modules["transformers"]
    asked = {"TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS"} & set(os.environ)
    if not asked:
        os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    try:
        import transformers
    finally:
        if not asked:
            del os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"]
    return transformers


def load_tokenizer(path: str | Path = TOKENIZER_DIR):
    """``transformers.AutoTokenizer`` from a local directory (the shipped HH BPE by default).

    Remote code is never run (``trust_remote_code=False``) and nothing is downloaded.
    """
    AutoTokenizer = _transformers().AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer: no such directory: {str(path)!r}")
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)


__all__ = [
    "HH_RLHF_FILE",
    "LoggedFeedbackPool",
    "TOKENIZER_DIR",
    "Completion",
    "CompletionData",
    "EncodedCompletion",
    "EncodedPair",
    "MalformedPair",
    "PackedRow",
    "PreferenceBatch",
    "PreferenceData",
    "PreferencePair",
    "SyntheticPreferences",
    "TokenBatch",
    "TruncationReport",
    "as_completion",
    "check_columns",
    "class_points",
    "check_hub_reachable",
    "collate_preferences",
    "collate_sequences",
    "difference_vectors",
    "completions_from_rows",
    "dialogue_messages",
    "encode_completions",
    "encode_pair",
    "encode_preference_rows",
    "encode_preferences",
    "load_hh_rlhf",
    "logged_feedback_pool",
    "load_preference_dataset",
    "load_splits",
    "load_tokenizer",
    "make_pair",
    "pack_completions",
    "pad_id",
    "pairs_from_rows",
    "read_json_lines",
    "row_to_pair",
    "shipped_hh_rows",
    "split_dialogue",
    "split_rows",
    "synthetic_dialogue_rows",
    "synthetic_preferences",
    "tokenize_preferences",
    "write_splits",
]
