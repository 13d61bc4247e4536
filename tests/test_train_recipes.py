"""The LLM trainers end to end on a synthetic preference task with a known rule (tests/llm_task):
SFT lowers the eval loss, the reward model and DPO learn the rule, every reference mode agrees,
accumulation equals a big batch, sharded equals single-device, resume is bit-identical."""

import json
import math
import pathlib

import jax
import llm_task
import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxpref import llm
from jaxpref.train import DPOConfig, NonFiniteError, RewardConfig, SFTConfig, make_mesh, train

COMMON = dict(
    max_length=24,
    max_prompt_length=12,
    per_device_train_batch_size=2,
    per_device_eval_batch_size=8,
    save_steps=0,
    disable_tqdm=True,
    logging_steps=5,
)
QUIET = dict(log=lambda _: None)
NO_EVAL = dict(dataset_test_split="none")  # a split the data lacks: no eval pass (faster)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    return {
        "root": root,
        "data": llm_task.write_dataset(root / "data"),
        "base": llm_task.make_model_dir(root / "base"),
    }


def _cfg(cls, task, out, **kw):
    kw = {**COMMON, "dataset_name": str(task["data"]), "output_dir": str(out), **kw}
    kw.setdefault("model_name_or_path", str(task["sft"] if "sft" in task else task["base"]))
    return cls(**kw)


@pytest.fixture(scope="module")
def sft(task):
    out = task["root"] / "sft"
    config = _cfg(
        SFTConfig,
        task,
        out,
        model_name_or_path=str(task["base"]),
        max_steps=40,
        learning_rate=3e-3,
        eval_on_start=True,
        eval_steps=20,
    )
    result = train(config, **QUIET)
    task["sft"] = out
    return result


def _tensorboard_scalars(folder):
    """Every scalar of the event files (TFRecord framing read by hand, tensorboardX's protos)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for file in sorted(pathlib.Path(folder).glob("events.out.tfevents.*")):
        data = file.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 16 + length  # length, its CRC, the record, its CRC
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def _rows(out):
    return [
        json.loads(line) for line in (pathlib.Path(out) / "metrics.jsonl").read_text().splitlines()
    ]


def test_sft_lowers_eval_loss_and_writes_a_hf_run(sft):
    evals = [r["eval_loss"] for r in sft.history if "eval_loss" in r]
    assert len(evals) == 3 and evals[-1] < 0.6 * evals[0]
    out = sft.output_dir
    rows = _rows(out)
    train_rows = [r for r in rows if "loss" in r]
    assert {"step", "epoch", "loss", "learning_rate", "grad_norm", "num_tokens"} <= set(
        train_rows[0]
    )
    assert [r["step"] for r in train_rows] == list(range(5, 41, 5))
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    scalars = _tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == list(range(5, 41, 5))
    assert scalars["train/loss"][-1][1] == pytest.approx(train_rows[-1]["loss"], rel=1e-6)
    assert [step for step, _ in scalars["eval/loss"]] == [0, 20, 40]
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(str(out)).model_type == "llama"
    assert AutoTokenizer.from_pretrained(str(out)).pad_token == "<pad>"
    reloaded = llm.from_pretrained(out)
    assert reloaded.config.vocab_size == 40
    run = json.loads((out / "jaxpref_run.json").read_text())
    assert run["recipe"] == "sft" and run["config"]["max_steps"] == 40


def test_reward_model_learns_the_rule_and_saves_for_transformers(task, sft):
    out = task["root"] / "rm"
    result = train(_cfg(RewardConfig, task, out, max_steps=30, learning_rate=3e-3), **QUIET)
    assert result.final_eval["eval_accuracy"] >= 0.9
    assert result.final_eval["eval_margin"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    rm = llm.reward_model_from_pretrained(out)
    pair = llm_task.rows(1, seed=5)[0]
    tok = llm_task.make_tokenizer()
    ids = [tok(pair["prompt"] + pair[k])["input_ids"] for k in ("chosen", "rejected")]
    scores = [float(rm(np.asarray([x]), np.ones((1, len(x)), np.int32))[0]) for x in ids]
    assert scores[0] > scores[1]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_learns_the_rule(task, sft, loss_type):
    out = task["root"] / f"dpo_{loss_type}"
    lr = 3e-3 if loss_type != "ipo" else 1e-3
    config = _cfg(
        DPOConfig,
        task,
        out,
        max_steps=30,
        learning_rate=lr,
        use_peft=True,
        lora_r=4,
        lora_target_modules=("all-linear",),
        loss_type=(loss_type,),
        beta=0.5,
    )
    result = train(config, **QUIET)
    assert result.final_eval["eval_rewards/accuracies"] >= 0.9
    assert result.final_eval["eval_rewards/margins"] > 0
    keys = {
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    }
    assert keys <= set(result.history[0]) and {f"eval_{k}" for k in keys} <= set(result.final_eval)


def _first_step(task, out, **kw):
    config = _cfg(
        DPOConfig, task, out, max_steps=1, logging_steps=1, learning_rate=1e-3, **NO_EVAL, **kw
    )
    return train(config, **QUIET).history[0]


@pytest.mark.parametrize("ref", ["sft", "base"])
def test_reference_modes_give_the_same_first_step(task, sft, ref):
    """(a) adapters off, (b) a frozen model argument, (c) precomputed: one first-step loss."""
    root = task["root"] / f"modes_{ref}"
    ref_dir = str(task[ref])
    rows = {}
    if ref == "sft":  # the policy's own base is the reference only for the policy's base
        rows["a"] = _first_step(task, root / "a", use_peft=True)
        rows["b_copy"] = _first_step(task, root / "b_copy")  # full fine-tuning: the initial policy
    rows["b"] = _first_step(task, root / "b", use_peft=True, ref_model_name_or_path=ref_dir)
    rows["c"] = _first_step(
        task,
        root / "c",
        use_peft=True,
        ref_model_name_or_path=ref_dir,
        precompute_ref_log_probs=True,
    )
    rows["c_full"] = _first_step(
        task, root / "c_full", ref_model_name_or_path=ref_dir, precompute_ref_log_probs=True
    )
    losses = {k: r["loss"] for k, r in rows.items()}
    first = next(iter(losses.values()))
    for mode, loss in losses.items():
        assert loss == pytest.approx(first, abs=2e-6), (mode, losses)
    if ref == "sft":
        assert first == pytest.approx(math.log(2), abs=2e-6)  # the policy starts at its reference
    else:
        assert abs(first - math.log(2)) > 1e-2  # a different reference: a nonzero margin


def _weights(out):
    return load_file(str(pathlib.Path(out) / "model.safetensors"))


def test_gradient_accumulation_equals_one_big_batch(task, sft):
    """Losses normalised by the step's pair and token counts: 2 × 4 rows ≡ 1 × 8 rows."""
    kw = dict(
        max_steps=3,
        learning_rate=1e-3,
        loss_type=("sigmoid", "sft"),
        loss_weights=(1.0, 0.3),
        **NO_EVAL,
    )
    one = task["root"] / "accum_1"
    two = task["root"] / "accum_2"
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    a = train(_cfg(DPOConfig, task, one, per_device_train_batch_size=8, **kw), mesh=mesh, **QUIET)
    b = train(
        _cfg(
            DPOConfig, task, two, per_device_train_batch_size=4, gradient_accumulation_steps=2, **kw
        ),
        mesh=mesh,
        **QUIET,
    )
    for k, w in _weights(one).items():
        np.testing.assert_allclose(_weights(two)[k], w, rtol=2e-5, atol=2e-6, err_msg=k)
    assert a.history[-1]["loss"] == pytest.approx(b.history[-1]["loss"], rel=1e-5)
    assert a.final_eval is None  # no eval split asked for: no eval program compiled


def test_sharded_step_equals_single_device(task, sft):
    kw = dict(
        max_steps=2,
        learning_rate=1e-3,
        use_peft=True,
        lora_target_modules=("all-linear",),
        **NO_EVAL,
    )
    single = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    train(
        _cfg(DPOConfig, task, task["root"] / "one_dev", per_device_train_batch_size=8, **kw),
        mesh=single,
        **QUIET,
    )
    train(
        _cfg(
            DPOConfig,
            task,
            task["root"] / "eight_dev",
            per_device_train_batch_size=2,
            mesh="data=2,fsdp=2,tensor=2",
            **kw,
        ),
        **QUIET,
    )
    ref = _weights(task["root"] / "one_dev")
    for k, w in _weights(task["root"] / "eight_dev").items():
        np.testing.assert_allclose(w, ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


class Killed(Exception):
    pass


def test_resume_after_a_kill_is_bit_identical(task, sft):
    kw = dict(
        max_steps=6, save_steps=3, learning_rate=1e-3, use_peft=True, logging_steps=1, **NO_EVAL
    )
    full = task["root"] / "uninterrupted"
    train(_cfg(DPOConfig, task, full, **kw), **QUIET)
    cut = task["root"] / "killed"

    def die(step, _):
        if step == 5:  # after the checkpoint of step 3: steps 4 and 5 are lost with the process
            raise Killed

    with pytest.raises(Killed):
        train(_cfg(DPOConfig, task, cut, **kw), on_step=die, **QUIET)
    assert (cut / "checkpoints" / "3").exists()
    with pytest.raises(ValueError, match="holds another run"):
        train(_cfg(DPOConfig, task, cut, **kw), **QUIET)
    train(_cfg(DPOConfig, task, cut, resume=True, **kw), **QUIET)
    for k, w in _weights(full).items():
        np.testing.assert_array_equal(_weights(cut)[k], w, err_msg=k)
    steps = [r["step"] for r in _rows(cut) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # rows of the lost steps were recomputed, not doubled
    assert [r["loss"] for r in _rows(cut) if "loss" in r] == [
        r["loss"] for r in _rows(full) if "loss" in r
    ]


def test_nonfinite_steps_are_skipped_then_stop_the_run(task, tmp_path):
    bad = llm_task.make_model_dir(tmp_path / "nan_model")
    weights = load_file(str(bad / "model.safetensors"))
    weights["model.norm.weight"][:] = np.nan
    from safetensors.numpy import save_file

    save_file(weights, str(bad / "model.safetensors"))
    seen = []
    config = _cfg(
        SFTConfig,
        task,
        tmp_path / "run",
        model_name_or_path=str(bad),
        max_steps=10,
        max_nonfinite_steps=3,
        logging_steps=1,
        **NO_EVAL,
    )
    lines = []
    with (
        pytest.warns(RuntimeWarning, match="'model.norm.weight' holds non-finite"),
        pytest.raises(NonFiniteError, match="step 3: the loss or gradient was not finite in 3"),
    ):
        train(config, on_step=lambda s, m: seen.append(m["nonfinite"]), log=lines.append)
    assert seen == [1, 1, 1]
    skipped = [line for line in lines if "update skipped" in line]
    assert [line.split(":")[0] for line in skipped] == ["step 1", "step 2", "step 3"]
    assert not (tmp_path / "run").exists()  # nothing worth keeping: no checkpoint yet


def test_conversational_data_goes_through_the_chat_template(tmp_path):
    data = llm_task.write_dataset(tmp_path / "chat", n_train=8, n_test=4, chat=True)
    model = llm_task.make_model_dir(tmp_path / "model", chat=True)
    config = DPOConfig(
        model_name_or_path=str(model),
        dataset_name=str(data),
        max_steps=1,
        output_dir=str(tmp_path / "run"),
        **{**COMMON, "max_length": 32},
    )
    from jaxpref.train.dpo import DPO

    recipe = DPO(config, llm_task.make_tokenizer(chat=True), reference="frozen")
    from jaxpref.data import load_splits

    encoded, report = recipe.encode(load_splits(data)["train"], llm_task.make_tokenizer(chat=True))
    tok = llm_task.make_tokenizer(chat=True)
    text = " ".join(tok.convert_ids_to_tokens(encoded[0].prompt + encoded[0].chosen))
    assert text.startswith("<bos> system: be kind user: tell me about")
    assert text.endswith("assistant: " + llm_task.rows(1, 0)[0]["chosen"].strip() + " <eos>")
    assert len(encoded) == 8
    result = train(config, **QUIET)
    assert result.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_lora_export_merged_and_as_peft_adapters(task, sft, tmp_path):
    config = _cfg(
        DPOConfig,
        task,
        tmp_path / "run",
        max_steps=2,
        learning_rate=1e-2,
        use_peft=True,
        lora_r=2,
        save_adapters=True,
        **NO_EVAL,
    )
    train(config, **QUIET)
    adapters = load_file(str(tmp_path / "run" / "adapters" / "adapter_model.safetensors"))
    meta = json.loads((tmp_path / "run" / "adapters" / "adapter_config.json").read_text())
    assert meta["r"] == 2 and meta["target_modules"] == ["q_proj", "v_proj"]
    base, merged = _weights(task["sft"]), _weights(tmp_path / "run")
    name = "model.layers.0.self_attn.q_proj"
    a = adapters[f"base_model.model.{name}.lora_A.weight"]  # (r, in)
    b = adapters[f"base_model.model.{name}.lora_B.weight"]  # (out, r)
    assert a.shape == (2, 32) and np.abs(b).max() > 0
    scale = meta["lora_alpha"] / meta["r"]
    np.testing.assert_allclose(
        merged[f"{name}.weight"], base[f"{name}.weight"] + scale * b @ a, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(
        merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"]
    )


def test_bf16_compute_over_float32_master_weights(task, sft, tmp_path):
    kw = dict(max_steps=2, learning_rate=1e-3, logging_steps=1, **NO_EVAL)
    f32 = train(_cfg(SFTConfig, task, tmp_path / "f32", **kw), **QUIET)
    bf16 = train(_cfg(SFTConfig, task, tmp_path / "bf16", dtype="bfloat16", **kw), **QUIET)
    assert {str(w.dtype) for w in _weights(tmp_path / "bf16").values()} == {"float32"}
    for a, b in zip(f32.history, bf16.history):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2)  # bf16 matmuls, float32 log-probs
    assert bf16.history[0]["loss"] != f32.history[0]["loss"]  # the compute dtype did change


def test_packing_changes_rows_not_the_loss(task, tmp_path):
    """With every example in one step, packed and unpacked SFT take the same step."""
    data = llm_task.write_dataset(tmp_path / "small", n_train=12, n_test=2)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    opts = {**COMMON, "per_device_train_batch_size": 12, "max_length": 48, "logging_steps": 1}
    kw = dict(
        model_name_or_path=str(task["base"]),
        dataset_name=str(data),
        max_steps=1,
        learning_rate=1e-3,
        **opts,
        **NO_EVAL,
    )
    plain = train(SFTConfig(output_dir=str(tmp_path / "plain"), **kw), mesh=mesh, **QUIET)
    packed = train(
        SFTConfig(output_dir=str(tmp_path / "packed"), packing=True, **kw), mesh=mesh, **QUIET
    )
    assert "12 examples in" in packed.data_report["train"]["packing"]
    assert packed.history[0]["loss"] == pytest.approx(plain.history[0]["loss"], rel=1e-6)
    for k, w in _weights(tmp_path / "plain").items():
        np.testing.assert_allclose(_weights(tmp_path / "packed")[k], w, rtol=1e-5, atol=1e-7)


def test_scanned_layers_and_remat_train_like_the_loop(task, sft, tmp_path):
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    # Adam's step m/(√v + ε) is ±lr for any gradient ≫ ε, so a coordinate whose gradient is at
    # round-off level could move by lr in one form and not the other (seen: 1.5e-6 with ε=1e-8);
    # ε = 1e-3 keeps the step proportional to the gradient for those, so equal gradients up to
    # float32 round-off give equal weights up to round-off.
    kw = dict(max_steps=2, learning_rate=1e-3, adam_epsilon=1e-3, **NO_EVAL)
    train(_cfg(DPOConfig, task, tmp_path / "loop", **kw), mesh=mesh, **QUIET)
    train(
        _cfg(DPOConfig, task, tmp_path / "scan", scan_layers=True, remat="block", **kw),
        mesh=mesh,
        **QUIET,
    )
    a, b = _weights(tmp_path / "loop"), _weights(tmp_path / "scan")
    assert set(a) == set(b)  # the scanned model exports per-layer HF tensors
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
    lora = dict(max_steps=1, use_peft=True, lora_r=2, save_adapters=True, **NO_EVAL)
    for name, extra in (("lora_loop", {}), ("lora_scan", {"scan_layers": True})):
        train(_cfg(DPOConfig, task, tmp_path / name, **lora, **extra), mesh=mesh, **QUIET)
    adapters = [
        load_file(str(tmp_path / d / "adapters" / "adapter_model.safetensors"))
        for d in ("lora_loop", "lora_scan")
    ]
    assert {k: v.shape for k, v in adapters[0].items()} == {
        k: v.shape for k, v in adapters[1].items()
    }


def test_remat_choices_are_the_model_layers():
    from jaxpref.train.config import REMAT

    assert REMAT == llm.REMAT_POLICIES
