"""Shared set-up of the LLM pipelines (SFT → reward model → a policy stage): the shipped rows cut
into one folder per stage, each with the same held-out test split, and the random base model."""

from __future__ import annotations

import pathlib

from jaxpref.data import write_splits
from jaxpref.train.models import init_model_dir, small_llama


def stage_folders(rows, root: pathlib.Path, parts: dict, stages, *, seed: int) -> dict:
    """``write_splits`` of ``rows`` into ``root/data_all`` by ``parts`` (one of them ``"test"``),
    then ``root/data_<stage>/{train,test}.jsonl`` for each stage; returns the part sizes."""
    sizes = write_splits(rows, root / "data_all", parts, seed=seed)
    for stage in stages:
        folder = root / f"data_{stage}"
        folder.mkdir(exist_ok=True)
        (folder / "train.jsonl").write_text((root / "data_all" / f"{stage}.jsonl").read_text())
        (folder / "test.jsonl").write_text((root / "data_all" / "test.jsonl").read_text())
    return sizes


def base_model(root: pathlib.Path, tok, cfg, *, max_positions: int, seed: int) -> pathlib.Path:
    """A random small Llama of ``cfg``'s hidden size, layers and heads in ``root/base``."""
    shape = dict(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        max_positions=max_positions,
    )
    return init_model_dir(root / "base", small_llama(tok, **shape), tok, seed=seed, overwrite=True)


def sft_on_rows(root: pathlib.Path, rows, cfg, *, source: pathlib.Path, batch: int = 16):
    """``source`` fine-tuned (SFT) on every row's chosen response into ``root/sft``: the rows go to
    ``root/data/train.jsonl``; ``cfg.sft_steps`` steps at ``cfg.sft_lr`` with ``cfg``'s
    ``max_length``, ``max_prompt_length`` and ``seed``, ``batch`` rows a step over the data
    mesh. Returns ``root/sft``."""
    from jaxpref.train import SFTConfig, train
    from jaxpref.train.mesh import data_parallel_mesh

    write_splits(rows, root / "data", {"train": -1}, seed=cfg.seed)
    mesh, per_device = data_parallel_mesh(batch)
    sft = SFTConfig(
        model_name_or_path=str(source),
        output_dir=str(root / "sft"),
        dataset_name=str(root / "data"),
        learning_rate=cfg.sft_lr,
        max_steps=cfg.sft_steps,
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        per_device_train_batch_size=per_device,
        save_steps=0,
        seed=cfg.seed,
        disable_tqdm=True,
        overwrite=True,  # the run owns its folder
        warmup_ratio=0.05,
    )
    train(sft, log=lambda _: None, mesh=mesh)
    return root / "sft"
