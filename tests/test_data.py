"""Preference loading, HH splitting, malformed-pair report, collation masks, synthetic pairs."""

import gzip
import json

import jax
import numpy as np
import pytest

from jaxpref.data import (
    HH_RLHF_FILE,
    EncodedPair,
    check_columns,
    collate_preferences,
    collate_sequences,
    completions_from_rows,
    dialogue_messages,
    load_hh_rlhf,
    load_preference_dataset,
    load_splits,
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
    assert out == PreferencePair("\n\nHuman: q\n\nAssistant:", " a", " b", 0)
    assert out.messages == ({"role": "user", "content": "q"},) and not out.conversational


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".jsonl.gz"])
def test_load_local_files(tmp_path, suffix):
    import datasets

    rows = {
        "chosen": ["\n\nHuman: q\n\nAssistant: a", "\n\nHuman: r"],
        "rejected": ["\n\nHuman: q\n\nAssistant: b", "\n\nHuman: r\n\nAssistant: c"],
    }
    path = tmp_path / f"prefs{suffix}"
    ds = datasets.Dataset.from_dict(rows)
    if suffix == ".parquet":
        ds.to_parquet(str(path))
    elif suffix == ".csv":
        ds.to_csv(str(path), index=False)
    else:
        ds.to_json(str(path))
    data = load_preference_dataset(path, cache_dir=str(tmp_path / "cache"))
    assert (data.num_rows, len(data), data.malformed[0].reason) == (2, 1, "missing_assistant")
    assert data.pairs[0].chosen == " a"


def test_load_local_dataset_folder(tmp_path):
    folder = tmp_path / "prefs"
    folder.mkdir()
    rows = [{"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}]
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_preference_dataset(folder, split="test", cache_dir=str(tmp_path / "cache"))
    assert (data.num_rows, data.pairs[0].rejected) == (1, " b")
    with pytest.raises(
        ValueError, match="split: .* has no split 'validation' \\(it has 'test', 'train'\\)"
    ):
        load_preference_dataset(folder, split="validation", cache_dir=str(tmp_path / "cache"))


def test_load_save_to_disk_folder(tmp_path):
    import datasets

    rows = {"prompt": ["Why?"], "chosen": [" Because."], "rejected": [" No."]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})
    dd.save_to_disk(str(tmp_path / "saved"))
    data = load_preference_dataset(tmp_path / "saved")
    assert data.pairs[0] == PreferencePair("Why?", " Because.", " No.", 0)


def test_load_rejects_unknown_file_type(tmp_path):
    path = tmp_path / "prefs.txt"
    path.write_text("chosen,rejected\n")
    with pytest.raises(ValueError, match="dataset_name: unsupported file type 'prefs.txt'"):
        load_preference_dataset(path)


@pytest.mark.parametrize("name", ["./typo.jsonl", "data/prefs.jsonl", "/no/such/dir", "x.parquet"])
def test_path_like_name_is_never_sent_to_the_hub(name, monkeypatch):
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="dataset_name: no such file or directory"):
        load_splits(name)
    assert time.perf_counter() - t0 < 1.0


def test_hub_name_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE is set"):
        load_splits("Anthropic/hh-rlhf")


def test_hub_name_unreachable_fails_within_seconds(monkeypatch):
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot be reached"):
        load_splits("someone/prefs")
    assert time.perf_counter() - t0 < 8.0


GOOD = {"prompt": "q", "chosen": " a", "rejected": " b"}


def test_bad_lines_and_values_are_reported_not_fatal(tmp_path):
    lines = [
        json.dumps(GOOD).encode(),
        b'{"prompt": "q", "chosen": " a", "rej',  # broken JSON
        json.dumps({"prompt": "q", "chosen": None, "rejected": " b"}).encode(),
        json.dumps({"prompt": "q", "chosen": 3, "rejected": " b"}).encode(),
        json.dumps(
            {
                "prompt": [{"role": "user"}],
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            }
        ).encode(),
        '{"prompt": "q", "chosen": " caf\u00e9", "rejected": " b"}'.encode(),
        b'{"prompt": "q", "chosen": " \xff\xfe", "rejected": " b"}',  # not UTF-8
        json.dumps({"prompt": "q", "rejected": " b"}).encode(),
    ]
    path = tmp_path / "messy.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    data = load_preference_dataset(path, cache_dir=str(tmp_path / "cache"))
    assert data.num_rows == 8 and [p.index for p in data.pairs] == [0, 5]
    got = [(m.index, m.reason, m.column) for m in data.malformed]
    assert got == [
        (1, "bad_line", None),
        (2, "bad_value", "chosen"),
        (3, "bad_value", "chosen"),
        (4, "bad_value", "prompt"),
        (6, "bad_line", None),
        (7, "bad_value", "chosen"),
    ]
    assert "not UTF-8" in data.malformed[4].detail


def test_truncated_gzip_names_file_and_progress(tmp_path):
    import gzip

    body = b"".join(json.dumps(GOOD).encode() + b"\n" for _ in range(2000))
    blob = gzip.compress(body)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"cut.jsonl.gz is truncated or corrupt after \d+ lines"):
        load_preference_dataset(path, cache_dir=str(tmp_path / "cache"))


def test_trl_formats_standard_conversational_implicit():
    user = {"role": "user", "content": "x"}
    sys_msg = {"role": "system", "content": "be nice"}
    a, b = {"role": "assistant", "content": "y"}, {"role": "assistant", "content": "z"}
    rows = [
        {"prompt": "Why?", "chosen": " Because.", "rejected": " No."},
        {"prompt": [sys_msg, user], "chosen": [a], "rejected": [b]},
        {"chosen": [sys_msg, user, a], "rejected": [sys_msg, user, b]},
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"},
        {"prompt": "Why?", "chosen": [a], "rejected": [b]},
        {"chosen": [user, a], "rejected": [user, a]},
        {"chosen": [user, a], "rejected": [{"role": "user", "content": "other"}, b]},
    ]
    data = pairs_from_rows(rows)
    p = {pair.index: pair for pair in data.pairs}
    assert p[0] == PreferencePair("Why?", " Because.", " No.", 0)
    assert p[1].conversational and p[1].prompt == (sys_msg, user) and p[1].chosen == (a,)
    assert p[2].prompt == (sys_msg, user) and (p[2].chosen, p[2].rejected) == ((a,), (b,))
    assert (p[3].prompt, p[3].chosen, p[3].rejected) == ("The sky is", " blue.", " green.")
    assert (p[4].prompt, p[4].chosen) == ("\n\nHuman: q\n\nAssistant:", " a")
    got = [(m.index, m.reason) for m in data.malformed]
    assert got == [(5, "mixed_formats"), (6, "identical"), (7, "prompt_mismatch")]


def test_missing_columns_error_names_found_and_expected():
    with pytest.raises(
        ValueError, match="lacks column\\(s\\) 'rejected' \\(found 'prompt', 'chosen'"
    ):
        check_columns(["prompt", "chosen"], ["chosen", "rejected"], source="prefs.jsonl")


def test_duplicates_reported_and_dropped_on_request():
    rows = [GOOD, {**GOOD, "chosen": " c"}, GOOD]
    kept = pairs_from_rows(rows)
    assert (len(kept), kept.duplicates) == (3, [2]) and "1 duplicate pairs" in kept.summary()
    dropped = pairs_from_rows(rows, drop_duplicates=True)
    assert [p.index for p in dropped.pairs] == [0, 1] and dropped.duplicates == [2]


def test_sft_completions_from_every_format():
    user, a = {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}
    rows = [
        {"prompt": "2+2=", "completion": " 4"},
        {"messages": [user, a]},
        {"text": "plain text"},
        {"prompt": "q", "chosen": " good", "rejected": " bad"},
        {"messages": [a, user]},
        {"prompt": "q", "completion": ""},
    ]
    data = completions_from_rows(rows)
    ex = {e.index: e for e in data.examples}
    assert (ex[0].prompt, ex[0].completion) == ("2+2=", " 4")
    assert (ex[1].prompt, ex[1].completion) == ((user,), (a,))
    assert (ex[2].prompt, ex[2].completion) == ("", "plain text")
    assert (ex[3].prompt, ex[3].completion) == ("q", " good")
    assert [(m.index, m.reason) for m in data.malformed] == [
        (4, "missing_assistant"),
        (5, "empty_response"),
    ]


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
