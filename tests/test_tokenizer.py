"""The shipped HH byte-level BPE tokenizer, and pair encoding with and without a chat template
(a real Jinja template in tokenizer_config.json, loaded through AutoTokenizer)."""

import numpy as np
import pytest

from jaxpref.data import (
    TOKENIZER_DIR,
    encode_pair,
    load_tokenizer,
    make_pair,
    tokenize_preferences,
)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def pair():
    return make_pair(
        0,
        "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water and yeast.",
        "\n\nHuman: How do I bake bread?\n\nAssistant: I don't know.",
    )


# The HH dialogue format as a Jinja chat template, as a chat model's tokenizer_config.json
# carries it.
HH_CHAT_TEMPLATE = (  # newlines inside Jinja string literals: trim_blocks cannot eat them
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '\\n\\nHuman: ' + m['content'] }}"
    "{% else %}{{ '\\n\\nAssistant: ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}"
)


def _with_template(path, template):
    """The shipped tokenizer saved again with a chat template and reloaded from disk."""
    import json
    import shutil

    shutil.copytree(TOKENIZER_DIR, path, dirs_exist_ok=True)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    tok = load_tokenizer(path)
    assert tok.chat_template == template
    return tok


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory):
    return _with_template(tmp_path_factory.mktemp("chat_tokenizer"), HH_CHAT_TEMPLATE)


def test_loads_through_autotokenizer(tok):
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    assert len(tok) == len(again) <= 4096
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert sum(f.stat().st_size for f in TOKENIZER_DIR.iterdir()) < 400_000


@pytest.mark.parametrize(
    "text", ["\n\nHuman: Hello there!\n\nAssistant: Hi, how can I help?", "naïve café — 😀 ∑x²"]
)
def test_round_trips_text(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    with_bos = tok(text)["input_ids"]
    assert with_bos == [tok.bos_token_id, *ids]


def test_bpe_compresses_hh_text(tok):
    text = "\n\nHuman: What is the best way to learn to cook?\n\nAssistant: Practice every day."
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    assert n < len(text.encode()) / 2.5  # merges learned from the HH dialogues


def test_encode_pair_one_bos_one_eos_shared_prompt(tok, pair):
    enc = encode_pair(tok, pair)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    for resp, text in ((enc.chosen, pair.chosen), (enc.rejected, pair.rejected)):
        seq = enc.prompt + resp
        assert seq.count(bos) == 1 and seq[0] == bos
        assert seq.count(eos) == 1 and seq[-1] == eos
        assert tok.decode(resp[:-1]) == text
    assert tok.decode(enc.prompt[1:]) == pair.prompt


def test_tokenize_preferences_masks_cover_responses(tok, pair):
    enc = encode_pair(tok, pair)
    batch = tokenize_preferences(tok, [pair, pair], padding_side="left")
    c = batch.chosen
    np.testing.assert_array_equal(c.loss_mask.sum(1), len(enc.chosen))
    np.testing.assert_array_equal(c.attention_mask.sum(1), len(enc.prompt) + len(enc.chosen))
    width = c.input_ids.shape[1]
    assert width == len(enc.prompt) + max(len(enc.chosen), len(enc.rejected))
    assert list(c.input_ids[0, -len(enc.chosen) :]) == enc.chosen
    assert np.all(c.input_ids[c.attention_mask == 0] == tok.pad_token_id)


def test_truncation_keeps_bos_and_prompt_end(tok, pair):
    enc = encode_pair(tok, pair, max_length=8, max_prompt_length=4)
    full = encode_pair(tok, pair)
    assert enc.truncated and len(enc.prompt) == 4
    assert enc.prompt == [tok.bos_token_id, *full.prompt[-3:]]
    assert enc.chosen == full.chosen[:4] and len(enc.prompt) + len(enc.chosen) <= 8


def test_chat_template_path_no_duplicate_specials(tok, chat_tok, pair):
    enc = encode_pair(chat_tok, pair)
    plain = encode_pair(tok, pair)
    assert enc.prompt == plain.prompt  # the template writes BOS itself: not added twice
    assert enc.chosen.count(tok.eos_token_id) == 1 and enc.chosen[-1] == tok.eos_token_id
    assert tok.decode(enc.chosen) == " Mix flour, water and yeast.<|eos|>"


SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<' + m['role'] + '>' + m['content'] }}{% if m['role'] == 'assistant' %}"
    "{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}"
    "{% endif %}"
)


@pytest.fixture(scope="module")
def role_tok(tmp_path_factory):
    """A template that writes every role, so a dropped system message would show."""
    return _with_template(tmp_path_factory.mktemp("role_tokenizer"), SYSTEM_TEMPLATE)


def test_conversational_pair_goes_through_the_template(role_tok, tok):
    from jaxpref.data import PreferencePair

    system, user = {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}
    pair = PreferencePair(
        (system, user),
        ({"role": "assistant", "content": "Hello."},),
        ({"role": "assistant", "content": "Go away."},),
        0,
    )
    enc = encode_pair(role_tok, pair)
    assert role_tok.decode(enc.prompt) == "<|bos|><system>Be brief.<user>Hi?<assistant>"
    assert role_tok.decode(enc.chosen) == "Hello.<|eos|>"
    seq = enc.prompt + enc.rejected
    assert seq.count(tok.bos_token_id) == 1 and seq.count(tok.eos_token_id) == 1
    with pytest.raises(ValueError, match="tokenizer: has no chat template"):
        encode_pair(tok, pair)


def test_plain_text_prompt_is_not_templated(role_tok, tok):
    from jaxpref.data import PreferencePair

    pair = PreferencePair("Why is the sky blue?", " Rayleigh scattering.", " Magic.", 0)
    assert encode_pair(role_tok, pair) == encode_pair(tok, pair)


def test_trl_truncation_prompt_first_then_responses(tok, pair):
    full = encode_pair(tok, pair)
    short_prompt = encode_pair(tok, pair, max_prompt_length=3)  # total fits; prompt still cut
    assert short_prompt.prompt == [tok.bos_token_id, *full.prompt[-2:]]
    assert short_prompt.chosen == full.chosen and short_prompt.truncated
    cut = encode_pair(tok, pair, max_length=len(full.prompt) + 2)
    assert cut.prompt == full.prompt and cut.chosen == full.chosen[:2]
    with pytest.raises(ValueError, match="max_length: must be a positive int"):
        encode_pair(tok, pair, max_length=0)


def test_encode_preferences_reports_empty_and_identical(tok):
    from jaxpref.data import PreferencePair, encode_preferences

    same_start = PreferencePair("Q:", " yes and more words here", " yes but other words", 0)
    long_prompt = PreferencePair("word " * 50, " a", " b", 1)
    fine = PreferencePair("Q:", " a", " b", 2)
    n_prompt = len(tok("Q:")["input_ids"])
    kept, report = encode_preferences(tok, [same_start, long_prompt, fine], max_length=n_prompt + 1)
    assert [e.index for e in kept] == [2]
    assert (report.identical, report.empty, report.num_truncated) == ((0,), (1,), 3)
    assert "3 examples -> 1 kept" in report.summary()


def test_encode_completions_truncates_from_the_start(tok):
    from jaxpref.data import Completion, encode_completions

    examples = [Completion("", "plain text to model", 0), Completion("long " * 40, " x", 1)]
    kept, report = encode_completions(tok, examples, max_length=4)
    assert [e.index for e in kept] == [0] and report.empty == (1,)
    assert kept[0].prompt == [tok.bos_token_id] and kept[0].length == 4


def test_encode_preference_rows_reports_every_drop_and_subsets_in_row_order(tok):
    """Guards the pool of the ADPO §6.2 runner: malformed rows and truncation drops are counted
    by row, and ``num_pairs`` keeps a seeded subset in row order."""
    from jaxpref.data import encode_preference_rows

    n_prompt = len(tok("Q:")["input_ids"])
    rows = [
        {"prompt": "Q:", "chosen": " yes and more words", "rejected": " yes but other"},  # same
        {"prompt": "word " * 50, "chosen": " a", "rejected": " b"},  # empty after truncation
        {"prompt": "Q:", "chosen": " same", "rejected": " same"},  # malformed: identical
    ] + [{"prompt": "Q:", "chosen": f" {c}", "rejected": f" {r}"} for c, r in ("ab", "cd", "ef")]
    kw = dict(max_length=n_prompt + 1)
    full, report = encode_preference_rows(tok, rows, **kw)
    assert [e.index for e in full] == [3, 4, 5]
    assert report == {
        "rows": 6,
        "valid_pairs": 5,
        "malformed": {"identical": 1},
        "malformed_rows": [2],
        "truncated": 5,
        "dropped_empty_after_truncation": [1],
        "dropped_identical_after_truncation": [0],
        "pool_pairs": 3,
    }
    subsets = []
    for seed in range(6):
        sub, rep = encode_preference_rows(tok, rows, **kw, num_pairs=2, seed=seed)
        idx = [e.index for e in sub]
        assert rep["pool_pairs"] == 2 and idx == sorted(idx) and set(idx) <= {3, 4, 5}
        again, _ = encode_preference_rows(tok, rows, **kw, num_pairs=2, seed=seed)
        assert [e.index for e in again] == idx
        subsets.append(tuple(idx))
    assert len(set(subsets)) > 1  # the seed picks the subset
    assert encode_preference_rows(tok, rows, **kw, num_pairs=3)[0] == full
    with pytest.raises(ValueError, match="num_pairs: must be None or an integer ≥ 1"):
        encode_preference_rows(tok, rows, num_pairs=0)
