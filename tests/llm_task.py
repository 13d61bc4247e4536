"""A synthetic preference task with a known rule, a word-level tokenizer and a tiny Llama, all
made on the spot (nothing downloaded): the trainers' acceptance tests run on it.

Prompts name a topic; the chosen response is polite (words from ``GOOD``), the rejected one rude
(``BAD``), both about the prompt's topic. A reward model must learn the polarity, DPO must move
probability from rude to polite words.
"""

import json
import pathlib

import numpy as np

TOPICS = [f"topic{i}" for i in range(12)]
GOOD = ["please", "thanks", "kindly", "gladly", "sure"]
BAD = ["never", "ugh", "whatever", "no", "go_away"]
FILLER = ["tell", "me", "about", "and", "the", "."]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
ROLES = ["system:", "user:", "assistant:", "be", "kind"]
VOCAB = SPECIALS + TOPICS + GOOD + BAD + FILLER + ROLES
CHAT_TEMPLATE = (  # every role written, one EOS per assistant turn
    "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + ' ' }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = rng.choice(TOPICS, 2, replace=False)
        g, b = rng.choice(GOOD, 3), rng.choice(BAD, 3)
        out.append(
            {
                "prompt": f"tell me about {t[0]} and {t[1]}",
                "chosen": f" {g[0]} {t[0]} {g[1]} {g[2]} .",
                "rejected": f" {b[0]} {t[0]} {b[1]} {b[2]} .",
            }
        )
    return out


def conversational(row: dict) -> dict:
    """The same pair in TRL's conversational format (a system turn kept)."""
    prompt = [{"role": "system", "content": "be kind"}, {"role": "user", "content": row["prompt"]}]
    turn = lambda text: [{"role": "assistant", "content": text.strip()}]  # noqa: E731
    return {"prompt": prompt, "chosen": turn(row["chosen"]), "rejected": turn(row["rejected"])}


def write_dataset(folder: pathlib.Path, n_train=192, n_test=64, *, chat=False) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        data = [conversational(r) if chat else r for r in rows(n, seed)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    return folder


def make_tokenizer(*, chat: bool = False, permuted: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + (
        list(reversed(VOCAB[len(SPECIALS) :])) if permuted else VOCAB[len(SPECIALS) :]
    )
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
    )
    if chat:
        out.chat_template = CHAT_TEMPLATE
    return out


def make_model_dir(path: pathlib.Path, *, seed: int = 0, chat=False, **overrides) -> pathlib.Path:
    """A random tiny Llama as a HF directory with the task's tokenizer."""
    from jaxpref import llm

    config = llm.DecoderConfig.tiny(
        vocab_size=40, pad_token_id=0, bos_token_id=1, eos_token_id=2, **overrides
    )
    assert config.vocab_size >= len(VOCAB)
    llm.save_pretrained(llm.create_model(config, seed=seed), path)
    make_tokenizer(chat=chat).save_pretrained(str(path))
    return path
