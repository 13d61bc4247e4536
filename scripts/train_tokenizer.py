"""Train the small byte-level BPE tokenizer shipped in ``jaxpref/data/tokenizer/``.

    python scripts/train_tokenizer.py [--vocab-size 4096] [--out jaxpref/data/tokenizer]

Trained with ``tokenizers`` on every chosen and rejected dialogue of the HH-RLHF harmless-base
test split shipped in ``jaxpref/data/hh_rlhf/``; saved in Hugging Face format, so
``transformers.AutoTokenizer.from_pretrained(out)`` loads it. Encoding with special tokens
prepends ``<|bos|>`` (Llama style); ``<|eos|>`` ends responses and ``<|pad|>`` pads. There is no
chat template: the HH text format ("\\n\\nHuman: …\\n\\nAssistant: …") is the template.
Deterministic: the same data and vocabulary size give the same files.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "jaxpref" / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def hh_texts(path: Path = DATA) -> list[str]:
    """Every distinct chosen/rejected dialogue, in file order."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return list(dict.fromkeys(t for r in rows for t in (r["chosen"], r["rejected"])))


def train(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def save(tok: Tokenizer, out: Path) -> None:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # the name transformers 4 and 5 know
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=ROOT / "jaxpref" / "data" / "tokenizer")
    args = parser.parse_args()
    save(train(hh_texts(), args.vocab_size), args.out)
    print(f"saved a {args.vocab_size}-token byte-level BPE tokenizer to {args.out}")


if __name__ == "__main__":
    main()
