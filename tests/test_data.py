"""Preference loading, HH splitting, malformed-pair report, collation masks, synthetic pairs."""

import gzip
import json

import jax
import numpy as np
import pytest

from jaxpref.data import (
    HH_RLHF_FILE,
    EncodedPair,
    collate_preferences,
    collate_sequences,
    dialogue_messages,
    load_hh_rlhf,
    load_preference_dataset,
    make_pair,
    pairs_from_rows,
    split_dialogue,
    synthetic_dialogue_rows,
    synthetic_preferences,
)
from jaxpref.data.preferences import MalformedPair, PreferencePair

EMPTY = [86, 516, 925, 1103]
MISMATCH = [1254, 1688, 1950, 1952, 2036]


@pytest.fixture(scope="module")
def hh(tmp_path_factory):
    return load_hh_rlhf(cache_dir=str(tmp_path_factory.mktemp("hf_cache")))


@pytest.fixture(scope="module")
def raw_rows():
    with gzip.open(HH_RLHF_FILE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_shipped_hh_counts_and_malformed_indices(hh):
    assert hh.num_rows == 2312
    assert len(hh) == 2303
    assert hh.malformed_counts() == {"empty_response": 4, "prompt_mismatch": 5}
    by_reason = {r: [m.index for m in hh.malformed if m.reason == r] for r in hh.malformed_counts()}
    assert by_reason == {"empty_response": EMPTY, "prompt_mismatch": MISMATCH}
    assert "2312 rows -> 2303 pairs; 9 malformed" in hh.summary()


def test_shipped_hh_pairs_rebuild_their_rows(hh, raw_rows):
    kept = {p.index for p in hh.pairs}
    assert kept.isdisjoint(EMPTY + MISMATCH) and len(kept) == 2303
    for p in hh.pairs:
        row = raw_rows[p.index]
        assert p.prompt + p.chosen == row["chosen"]
        assert p.prompt + p.rejected == row["rejected"]
        assert p.prompt.endswith("\n\nAssistant:")
        assert "\n\nAssistant:" not in p.chosen and "\n\nAssistant:" not in p.rejected
    assert set(hh.columns()) == {"prompt", "chosen", "rejected"}


def test_shipped_hh_licence_and_readme_present():
    folder = HH_RLHF_FILE.parent
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "2,312 rows" in (folder / "README.md").read_text()


def test_split_dialogue_one_boundary_at_last_assistant():
    head = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: Assistant: is a word\n\nAssistant:"
    text = head + " yes it is"
    prompt, response = split_dialogue(text)
    assert prompt == head
    assert response == " yes it is"
    assert split_dialogue("\n\nHuman: no reply") is None
    assert split_dialogue("\n\nHuman: q\n\nAssistant:") == ("\n\nHuman: q\n\nAssistant:", "")


def test_dialogue_messages_turns():
    msgs = dialogue_messages("\n\nHuman: a b\n\nAssistant: c\n\nHuman:  d \n\nAssistant:")
    assert msgs == (
        {"role": "user", "content": "a b"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    )


@pytest.mark.parametrize(
    "chosen, rejected, reason",
    [
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant: a", "identical"),
        ("\n\nHuman: q\n\nAssistant: a ", "\n\nHuman: q\n\nAssistant: a", "identical"),
        ("\n\nHuman: q only", "\n\nHuman: q\n\nAssistant: b", "missing_assistant"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q", "missing_assistant"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: Q\n\nAssistant: b", "prompt_mismatch"),
        ("\n\nHuman: q\n\nAssistant:  ", "\n\nHuman: q\n\nAssistant: b", "empty_response"),
    ],
)
def test_make_pair_reports_malformed(chosen, rejected, reason):
    out = make_pair(7, chosen, rejected)
    assert isinstance(out, MalformedPair)
    assert (out.index, out.reason) == (7, reason)


def test_make_pair_valid():
    out = make_pair(0, "\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant: b")
    assert out == PreferencePair(
        "\n\nHuman: q\n\nAssistant:", " a", " b", ({"role": "user", "content": "q"},), 0
    )


def test_pairs_from_rows_prompt_column_and_messages():
    rows = [
        {"prompt": "Why?", "chosen": "Because.", "rejected": " No."},
        {
            "prompt": [{"role": "user", "content": "x"}],
            "chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
            "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        },
    ]
    data = pairs_from_rows(rows, prompt_key="prompt")
    assert [p.prompt for p in data.pairs] == ["\n\nHuman: Why?\n\nAssistant:"]
    assert (data.pairs[0].chosen, data.pairs[0].rejected) == (" Because.", " No.")
    assert [(m.index, m.reason) for m in data.malformed] == [(1, "identical")]
    with pytest.raises(ValueError, match="prompt: column missing"):
        pairs_from_rows([{"chosen": "a", "rejected": "b"}], prompt_key="prompt")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_load_local_files(tmp_path, suffix):
    import datasets

    rows = {
        "chosen": ["\n\nHuman: q\n\nAssistant: a", "\n\nHuman: r"],
        "rejected": ["\n\nHuman: q\n\nAssistant: b", "\n\nHuman: r\n\nAssistant: c"],
    }
    path = tmp_path / f"prefs{suffix}"
    ds = datasets.Dataset.from_dict(rows)
    ds.to_json(str(path)) if suffix == ".jsonl" else ds.to_parquet(str(path))
    data = load_preference_dataset(path, cache_dir=str(tmp_path / "cache"))
    assert (data.num_rows, len(data), data.malformed[0].reason) == (2, 1, "missing_assistant")
    assert data.pairs[0].chosen == " a"


def test_load_local_dataset_folder(tmp_path):
    folder = tmp_path / "prefs"
    folder.mkdir()
    rows = [{"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_preference_dataset(folder, split="test", cache_dir=str(tmp_path / "cache"))
    assert (data.num_rows, data.pairs[0].rejected) == (1, " b")


def test_load_rejects_unknown_file_type(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("chosen,rejected\n")
    with pytest.raises(ValueError, match="source: unsupported file type"):
        load_preference_dataset(path)


def test_collate_right_padding_masks():
    batch = collate_sequences([[1, 5], [1, 6, 7]], [[8, 2], [9]], pad_id=0, length=5)
    np.testing.assert_array_equal(batch.input_ids, [[1, 5, 8, 2, 0], [1, 6, 7, 9, 0]])
    np.testing.assert_array_equal(batch.attention_mask, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(batch.loss_mask, [[0, 0, 1, 1, 0], [0, 0, 0, 1, 0]])
    assert batch.input_ids.dtype == np.int32


def test_collate_left_padding_masks():
    batch = collate_sequences([[1, 5], [1]], [[8], [9]], pad_id=3, padding_side="left")
    np.testing.assert_array_equal(batch.input_ids, [[1, 5, 8], [3, 1, 9]])
    np.testing.assert_array_equal(batch.attention_mask, [[1, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(batch.loss_mask, [[0, 0, 1], [0, 0, 1]])


def test_collate_errors():
    with pytest.raises(ValueError, match="length: 2 is shorter"):
        collate_sequences([[1, 2]], [[3]], pad_id=0, length=2)
    with pytest.raises(ValueError, match="padding_side"):
        collate_sequences([[1]], [[3]], pad_id=0, padding_side="middle")


def test_collate_preferences_common_length():
    enc = [EncodedPair([1, 4], [5, 2], [6, 7, 2]), EncodedPair([1], [5, 2], [2])]
    batch = collate_preferences(enc, pad_id=0)
    assert batch.chosen.input_ids.shape == batch.rejected.input_ids.shape == (2, 5)
    np.testing.assert_array_equal(batch.rejected.loss_mask, [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(batch.chosen.input_ids[:, 0], batch.rejected.input_ids[:, 0])


def test_synthetic_preferences_follow_bt_rewards():
    key = jax.random.key(0)
    sure = synthetic_preferences(
        key, num_pairs=64, prompt_length=3, response_length=4, vocab_size=11, beta=1e6
    )
    assert np.all(sure.chosen_reward >= sure.rejected_reward)
    assert sure.batch.chosen.input_ids.shape == (64, 7)
    np.testing.assert_array_equal(sure.batch.chosen.loss_mask.sum(1), 4)
    np.testing.assert_array_equal(
        sure.batch.chosen.input_ids[:, :3], sure.batch.rejected.input_ids[:, :3]
    )
    w = sure.token_rewards
    np.testing.assert_allclose(
        w[sure.batch.chosen.input_ids[:, 3:]].mean(1), sure.chosen_reward, rtol=1e-6
    )
    flat = synthetic_preferences(
        key, num_pairs=400, prompt_length=1, response_length=3, vocab_size=50, beta=1e-6
    )
    frac = np.mean(flat.chosen_reward > flat.rejected_reward)
    assert 0.4 < frac < 0.6  # beta -> 0: preferences are coin flips


def test_synthetic_preferences_bad_input():
    with pytest.raises(ValueError, match="vocab_size"):
        synthetic_preferences(
            jax.random.key(0), num_pairs=2, prompt_length=1, response_length=1, vocab_size=0
        )
    with pytest.raises(ValueError, match="token_rewards"):
        synthetic_preferences(
            jax.random.key(0),
            num_pairs=2,
            prompt_length=1,
            response_length=1,
            vocab_size=3,
            token_rewards=np.ones(4),
        )


def test_synthetic_dialogue_rows_parse_as_hh():
    rows = synthetic_dialogue_rows(6, seed=3, num_turns=3)
    data = pairs_from_rows(rows)
    assert (len(data), data.malformed) == (6, [])
    assert all(len(p.messages) == 5 for p in data.pairs)  # 3 user + 2 assistant turns
    assert all(p.rejected.strip() != p.chosen.strip() for p in data.pairs)
    assert rows == synthetic_dialogue_rows(6, seed=3, num_turns=3)
