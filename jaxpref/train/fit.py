"""The one orchestrator of every recipe: jitted sharded steps with gradient accumulation, eval,
logging (``metrics.jsonl`` and TensorBoard), Orbax checkpoints with the data position, resume,
a progress bar, non-finite steps skipped, Ctrl-C saved.

What a step computes is the recipe's (see :mod:`jaxpref.train.recipe`): the orchestrator merges
the trained and frozen variables into models inside ``jit`` (compute-dtype copies of the float32
master weights), scans the recipe's sums over the micro-batches, divides by the step's counts and
applies AdamW. A step whose loss or gradient is not finite leaves the parameters and optimizer
state unchanged and is counted; ``max_nonfinite_steps`` in a row stop the run naming the step.
A run killed after a checkpoint and resumed with the same command (plus ``--resume``) ends
bit-identical to an uninterrupted one: batches and keys are functions of the step.

Multi-host (one process per host, see :mod:`jaxpref.llm.distributed`): every process runs the
same loop on the global mesh; each collates and places only the rows of every batch that land on
its own devices (``jax.make_array_from_process_local_data``), and its share of the data is part
of each checkpoint's data position. Checkpoints are written by all processes together; metrics by
process 0 only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxpref import llm
from jaxpref.llm import distributed
from jaxpref.llm.sharding import variable_spec
from jaxpref.train.batches import Schedule, bucket_lengths, eval_batches, pick_bucket
from jaxpref.train.checkpoint import Checkpointer
from jaxpref.train.config import TrainConfig, total_steps
from jaxpref.train.mesh import BATCH_AXES
from jaxpref.train.models import cast_floats
from jaxpref.train.recipe import Recipe
from jaxpref.train.steps import TrainState, abstract_state, state_shardings


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what was kept."""


@dataclasses.dataclass
class FitResult:
    state: TrainState
    step: int
    history: list[dict]  # every row written to metrics.jsonl by this process
    final_eval: dict | None


@dataclasses.dataclass
class Trainable:
    """The trained module split for ``jit``, and the frozen ones passed as arguments."""

    graphdef: nnx.GraphDef
    params: Any  # nnx.State of the trained variables
    rest: Any  # nnx.State of the other variables of the trained module (frozen base weights)
    frozen: dict[str, tuple[nnx.GraphDef, Any]]  # name → (graphdef, state)

    @classmethod
    def split(cls, module: nnx.Module, wrt, frozen: dict[str, nnx.Module] | None = None):
        graphdef, params, rest = nnx.split(module, wrt, ...)
        if not jax.tree.leaves(params):
            raise ValueError("model: the trainable filter selects no parameters")
        frozen = {k: nnx.split(m) for k, m in (frozen or {}).items()}
        return cls(graphdef, params, rest, frozen)


def make_optimizer(config: TrainConfig, steps: int, groups: tuple[str, ...] | None = None):
    """AdamW (decay on matrices only) after global-norm clipping, and its schedule.

    With ``groups`` (top-level names of the parameter tree, e.g. PPO's actor and critic), each
    group gets its own clipping and moments, as separate optimizer engines would.
    """
    lr = config.learning_rate
    warm = config.warmup_steps or math.ceil(config.warmup_ratio * steps)
    warm = min(warm, steps)
    kind = config.lr_scheduler_type
    if kind in ("constant", "constant_with_warmup"):
        after = optax.constant_schedule(lr)
    elif kind == "linear":
        after = optax.linear_schedule(lr, 0.0, max(steps - warm, 1))
    else:
        after = optax.cosine_decay_schedule(lr, max(steps - warm, 1))
    if kind == "constant" or warm == 0:
        schedule = after
    else:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warm), after], [warm])
    adamw = optax.adamw(
        schedule,
        b1=config.adam_beta1,
        b2=config.adam_beta2,
        eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params),
    )
    clip = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm > 0 else []
    tx = optax.chain(*clip, adamw)
    if groups:
        tx = optax.multi_transform({g: tx for g in groups}, _top_level_labels)
    return tx, schedule


def _top_level_labels(params):
    """Each leaf labelled with its top-level key (``actor`` / ``critic``)."""

    def label(path, _):
        first = path[0]
        return str(getattr(first, "key", getattr(first, "name", first)))

    return jax.tree_util.tree_map_with_path(label, params)


def _spec(name, var, mesh):
    return variable_spec(name, var, mesh)


class Trainer:
    """Runs ``recipe`` on ``model`` for ``config``; :meth:`fit` is the loop."""

    def __init__(
        self,
        recipe: Recipe,
        config: TrainConfig,
        trainable: Trainable,
        mesh,
        out_dir: pathlib.Path,
        *,
        log: Callable[[str], None] = print,
    ):
        self.recipe, self.config, self.mesh, self.out = recipe, config, mesh, out_dir
        self.trainable, self.log = trainable, log
        self.dtype = jnp.dtype(config.dtype)
        batch_devices = math.prod(mesh.shape[a] for a in BATCH_AXES)
        self.micro_rows = config.per_device_train_batch_size * batch_devices
        self.eval_rows = config.per_device_eval_batch_size * batch_devices
        self.schedule = Schedule(
            len(recipe.data["train"]),
            self.micro_rows,
            config.gradient_accumulation_steps,
            config.seed,
        )
        self.total = total_steps(config, self.schedule.steps_per_epoch)
        self.tx, self.lr = make_optimizer(
            config, self.total, getattr(recipe, "optimizer_groups", None)
        )
        longest = max(int(recipe.lengths(s).max()) for s in recipe.data if recipe.data[s])
        self.buckets = bucket_lengths(longest, config.length_buckets)
        self.batch_sharding = NamedSharding(mesh, PartitionSpec(None, BATCH_AXES))
        self.shares = process_shares(self.batch_sharding, self.micro_rows)  # checked here
        self._state_init()
        self._train_step = self._compile_train()
        self._eval_step = self._compile_eval()
        self.source = recipe.batch_source(self) if hasattr(recipe, "batch_source") else None

    # ---- state -----------------------------------------------------------------------------

    def _state_init(self):
        t = self.trainable
        rng = jax.random.key_data(jax.random.key(self.config.seed))

        def init(params, rest):
            return TrainState(params, rest, self.tx.init(params), jnp.zeros((), jnp.int32), rng)

        with jax.set_mesh(self.mesh):
            shapes = jax.eval_shape(init, t.params, t.rest)
            self.shardings = state_shardings(shapes, self.mesh, _spec)
            self.abstract = abstract_state(shapes, self.shardings)
            self.state = jax.jit(init, out_shardings=self.shardings, donate_argnums=(0, 1))(
                t.params, t.rest
            )
        self.frozen = {k: s for k, (_, s) in t.frozen.items()}

    def models(self):
        """The current trained model and the frozen ones, merged in the compute dtype."""
        return self.merge(self.state.params, self.state.rest, self.frozen)

    def merge(self, params, rest, frozen):
        """Modules from variables (compute-dtype copies); usable inside ``jit``."""
        t = self.trainable
        model = nnx.merge(
            t.graphdef, cast_floats(params, self.dtype), cast_floats(rest, self.dtype)
        )
        others = {
            k: nnx.merge(g, cast_floats(frozen[k], self.dtype)) for k, (g, _) in t.frozen.items()
        }
        return model, others

    # ---- steps -----------------------------------------------------------------------------

    def _loss(self, params, rest, frozen, micro, totals):
        model, others = self.merge(params, rest, frozen)
        stats = self.recipe.stats(model, others, micro)
        stats = {k: v.astype(jnp.float32) for k, v in stats.items()}
        return self.recipe.contribution(stats, totals), stats

    def _compile_train(self):
        recipe, tx, lr = self.recipe, self.tx, self.lr
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def step(state: TrainState, batch, frozen):
            totals = recipe.counts(batch)

            def body(carry, micro):
                (_, stats), grads = grad_fn(state.params, state.rest, frozen, micro, totals)
                return jax.tree.map(jnp.add, carry, (grads, stats)), None

            first = jax.tree.map(lambda x: x[0], batch)
            shapes = jax.eval_shape(
                lambda: grad_fn(state.params, state.rest, frozen, first, totals)
            )
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (shapes[1], shapes[0][1]))
            (grads, stats), _ = jax.lax.scan(body, zeros, batch)
            metrics = recipe.finalize(stats, totals)
            grad_norm = optax.tree.norm(grads)
            finite = jnp.isfinite(grad_norm) & jnp.isfinite(metrics["loss"])
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
            new = TrainState(
                keep(params, state.params),
                state.rest,
                keep(opt_state, state.opt_state),
                state.step + 1,
                state.rng,
            )
            metrics |= {
                "grad_norm": grad_norm,
                "learning_rate": lr(state.step),
                "nonfinite": (~finite).astype(jnp.int32),
                "num_tokens": sum(
                    jnp.sum(v) for k, v in batch.items() if k.endswith("attention_mask")
                ),
            }
            return new, metrics

        return jax.jit(
            step,
            in_shardings=(self.shardings, self.batch_sharding, None),
            out_shardings=(self.shardings, None),
            donate_argnums=(0,),
        )

    def _compile_eval(self):
        recipe = self.recipe

        def step(params, rest, frozen, batch):
            totals = recipe.counts(batch)
            micro = jax.tree.map(lambda x: x[0], batch)
            _, stats = self._loss(params, rest, frozen, micro, totals)
            return stats, totals

        return jax.jit(step, in_shardings=(None, None, None, self.batch_sharding))

    def step(self, batch) -> dict[str, jax.Array]:
        """One optimizer step on a placed batch (see :meth:`batch`); returns its metrics."""
        with jax.set_mesh(self.mesh):
            self.state, metrics = self._train_step(self.state, batch, self.frozen)
        return metrics

    def memory_analysis(self, batch):
        """XLA's memory analysis of the compiled train step for ``batch``'s shapes."""
        with jax.set_mesh(self.mesh):
            return (
                self._train_step.lower(self.state, batch, self.frozen).compile().memory_analysis()
            )

    # ---- data ------------------------------------------------------------------------------

    def _next_batch(self, step: int):
        if self.source is not None:
            return self.source(step)
        return self._batch("train", self.schedule.indices(step)), {}

    def batch(self, split: str, idx: np.ndarray):
        """The examples ``idx`` (``(accumulation, rows)``, ``-1`` = padding) of a split, collated
        to their bucket length and placed on the mesh."""
        return self._batch(split, idx)

    def _batch(self, split: str, idx: np.ndarray):
        lengths = self.recipe.lengths(split)[idx.reshape(-1).clip(0)]  # the same on every process
        lo, hi = process_shares(self.batch_sharding, idx.shape[1])[jax.process_index()]
        local = idx[:, lo:hi]  # this process's rows only
        arrays = self.recipe.collate(split, local, pick_bucket(int(lengths.max()), self.buckets))
        for prefix in ("", "chosen_", "rejected_"):  # the mask convention, on the host
            if f"{prefix}loss_mask" in arrays:
                flat = lambda k: arrays[f"{prefix}{k}"].reshape(
                    -1, arrays[f"{prefix}{k}"].shape[-1]
                )  # noqa: E731
                llm.check_loss_mask(flat("attention_mask"), flat("loss_mask"))
        return {
            k: jax.make_array_from_process_local_data(
                self.batch_sharding, v, (idx.shape[0], idx.shape[1], *v.shape[2:])
            )
            for k, v in arrays.items()
        }

    def evaluate(self, split: str = "eval") -> dict[str, float]:
        """Exact means of the recipe's metrics over the whole split (or the recipe's own
        evaluation, for recipes that generate)."""
        if hasattr(self.recipe, "evaluate"):
            return self.recipe.evaluate(self, split)
        stats, counts = None, None
        params, rest = self.state.params, self.state.rest
        with jax.set_mesh(self.mesh):
            for idx in eval_batches(len(self.recipe.data[split]), self.eval_rows):
                s, c = distributed.to_host(
                    self._eval_step(params, rest, self.frozen, self._batch(split, idx))
                )
                stats = s if stats is None else jax.tree.map(np.add, stats, s)
                counts = c if counts is None else jax.tree.map(np.add, counts, c)
        out = self.recipe.finalize(
            {k: np.float64(v) for k, v in stats.items()},
            {k: np.float64(v) for k, v in counts.items()},
        )
        return {k: float(v) for k, v in out.items()}

    def forward(self, split: str, fn: Callable, rows: int | None = None) -> np.ndarray:
        """``fn(model, frozen, micro) -> (rows, …)`` over a split in order (padding dropped)."""
        rows = rows or self.eval_rows

        @jax.jit
        def run(params, rest, frozen, batch):
            model, others = self.merge(params, rest, frozen)
            return fn(model, others, jax.tree.map(lambda x: x[0], batch))

        out = []
        n = len(self.recipe.data[split])
        with jax.set_mesh(self.mesh):
            for idx in eval_batches(n, rows):
                batch = self._batch(split, idx)
                res = distributed.to_host(
                    run(self.state.params, self.state.rest, self.frozen, batch)
                )
                out.append(res[idx[0] >= 0])
        return np.concatenate(out)

    # ---- the loop --------------------------------------------------------------------------

    def fit(self, *, metrics_writer, progress: bool = True, on_step=None) -> FitResult:
        """Train to ``total`` steps; ``on_step(step, metrics)`` runs after each step."""
        with Checkpointer(
            self.out / "checkpoints", max_to_keep=self.config.save_total_limit
        ) as ckpt:
            run = _Run(ckpt, metrics_writer, on_step)
            run.step = run.saved = self._maybe_resume(ckpt, metrics_writer)
            if run.step:
                run.nonfinite_total = int(ckpt.metadata(step=run.step).get("nonfinite_total", 0))
            if self.config.eval_on_start and run.step == 0 and "eval" in self.recipe.data:
                run.history.append(self._log_eval(metrics_writer, 0))
            bar = _progress(progress, self.total, run.step)
            ctrl_c = _DeferredInterrupt()
            try:
                with ctrl_c:  # Ctrl-C lands between steps, never inside a donating call
                    while run.step < self.total:
                        if ctrl_c.requested:
                            raise KeyboardInterrupt
                        batch, extra = self._next_batch(run.step)
                        metrics = distributed.to_host(self.step(batch))
                        self._after_step(run, {k: float(v) for k, v in metrics.items()} | extra)
                        bar.update(1)
                        if run.window == []:
                            bar.set_postfix(loss=run.history_train[-1]["loss"])
            except KeyboardInterrupt as err:
                bar.close()
                raise self._interrupted(run) from err
            bar.close()
            if run.step > run.saved or not ckpt.all_steps():
                self._save(ckpt, run.step, run.nonfinite_total)
            ckpt.wait()
        if "eval" in self.recipe.data and (
            run.last_eval is None or run.last_eval["step"] != run.step
        ):
            run.last_eval = self._log_eval(metrics_writer, run.step)
            run.history.append(run.last_eval)
        return FitResult(self.state, run.step, run.history, run.last_eval)

    def _after_step(self, run: _Run, metrics: dict) -> None:
        """Count non-finite steps, log, evaluate and checkpoint as the config asks."""
        config, step = self.config, run.step + 1
        run.step = step
        if run.on_step is not None:
            run.on_step(step, metrics)
        run.streak = run.streak + 1 if metrics["nonfinite"] else 0
        run.nonfinite_total += int(metrics["nonfinite"])
        if metrics["nonfinite"]:
            self.log(
                f"step {step}: non-finite loss or gradient (a reward, log-prob or update "
                f"overflowed); update skipped ({run.nonfinite_total} so far)"
            )
        if run.streak >= config.max_nonfinite_steps:
            raise NonFiniteError(
                f"step {step}: the loss or gradient was not finite in {run.streak} consecutive "
                f"steps ({step - run.streak + 1}–{step}, each skipped); stopping. Last "
                f"checkpoint: step {run.saved or 'none'}. Lower --learning_rate, use "
                "--max_grad_norm or check the data."
            )
        run.window.append(metrics)
        if step % config.logging_steps == 0 or step == self.total:
            row = _average(run.window) | {"nonfinite_steps": run.nonfinite_total}
            row.pop("nonfinite")
            row["num_tokens"] = sum(int(m["num_tokens"]) for m in run.window)
            run.history.append(run.writer.write(step, self.schedule.epoch_of(step), row))
            run.history_train.append(run.history[-1])
            run.window = []
        if self._due(config.eval_steps, step) and "eval" in self.recipe.data:
            run.last_eval = self._log_eval(run.writer, step)
            run.history.append(run.last_eval)
        if config.save_steps and step % config.save_steps == 0:
            run.saved = self._save(run.ckpt, step, run.nonfinite_total)

    def _interrupted(self, run: _Run) -> Interrupted:
        """Save the current step and say what was kept."""
        if run.step > run.saved:
            run.saved = self._save(run.ckpt, run.step, run.nonfinite_total)
            run.ckpt.wait()
        where = f"interrupted at step {run.step} of {self.total}"
        if not run.saved:
            return Interrupted(f"{where}, before any checkpoint; nothing kept")
        return Interrupted(
            f"{where}; the checkpoint of step {run.saved} is in {run.ckpt.directory} (run the "
            "same command with --resume to continue)"
        )

    def _due(self, every: int | None, step: int) -> bool:
        return bool(every) and step % every == 0

    def _log_eval(self, writer, step: int) -> dict:
        scores = self.evaluate("eval")
        return writer.write(
            step, self.schedule.epoch_of(step), {f"eval_{k}": v for k, v in scores.items()}
        )

    def _save(self, ckpt: Checkpointer, step: int, nonfinite_total: int) -> int:
        view = {
            "params": self.state.params,
            "opt_state": self.state.opt_state,
            "step": self.state.step,
            "rng": self.state.rng,
            **self._mutable_frozen(),
        }
        meta = {
            "data_position": self.schedule.position(step),
            "process_rows": {str(p): list(r) for p, r in self.shares.items()},
            "total_steps": self.total,
            "nonfinite_total": nonfinite_total,
        }
        return ckpt.save(view, step=step, metadata=meta)

    def _check_shares(self, saved: dict | None) -> None:
        """Each process resumes at the data position saved for it, or says how it changed."""
        now = {str(p): list(r) for p, r in self.shares.items()}
        if saved is not None and saved != now:
            self.log(
                f"resume: each micro-batch's rows were read as {saved} (process: [first, end)) "
                f"and are now read as {now}; the global order of the examples is unchanged"
            )

    def _mutable_frozen(self) -> dict:
        """Frozen models the recipe replaces during training (a refreshed reference): they are
        part of the checkpoint."""
        names = getattr(self.recipe, "mutable_frozen", ())
        return {"frozen": {k: self.frozen[k] for k in names}} if names else {}

    def _maybe_resume(self, ckpt: Checkpointer, writer) -> int:
        if not self.config.resume:
            return 0
        step = ckpt.latest_step()
        if step is None:
            raise ValueError(f"resume: no checkpoint in {ckpt.directory} to resume from")
        meta = ckpt.metadata(step=step)
        expected = self.schedule.position(step)
        if meta.get("data_position") != expected:
            raise ValueError(
                f"resume: the data changed since step {step} was saved (saved position "
                f"{meta.get('data_position')}, now {expected}); resume with the same dataset"
            )
        self._check_shares(meta.get("process_rows"))
        a = self.abstract
        target = {"params": a.params, "opt_state": a.opt_state, "step": a.step, "rng": a.rng}
        target |= jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
            self._mutable_frozen(),
        )
        with jax.set_mesh(self.mesh):
            got = ckpt.restore(target, step=step)
        self.state = TrainState(
            got["params"], self.state.rest, got["opt_state"], got["step"], got["rng"]
        )
        self.frozen |= got.get("frozen", {})
        writer.truncate_after(step)
        self.log(f"resumed from step {step} of {self.total} ({ckpt.directory})")
        return step


@dataclasses.dataclass
class _Run:
    """Counters of one ``fit`` call."""

    ckpt: Checkpointer
    writer: MetricsWriter
    on_step: Callable | None
    step: int = 0
    saved: int = 0  # last checkpointed step
    streak: int = 0  # consecutive non-finite steps
    nonfinite_total: int = 0
    window: list = dataclasses.field(default_factory=list)  # metrics since the last log row
    history: list = dataclasses.field(default_factory=list)  # every row written
    history_train: list = dataclasses.field(default_factory=list)
    last_eval: dict | None = None


class _DeferredInterrupt:
    """Inside the block a first Ctrl-C only sets ``requested`` (the loop raises at a safe point);
    a second one raises at once. Outside the main thread it does nothing."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        import signal
        import threading

        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _average(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(enabled: bool, total: int, start: int):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, unit="step", file=sys.stderr, dynamic_ncols=True)


def process_shares(sharding: NamedSharding, rows: int) -> dict[int, tuple[int, int]]:
    """``{process: (first, end)}``: the rows of a ``(accumulation, rows, ...)`` batch each process
    feeds to its devices. Every process must own a distinct, equal, contiguous block (the batch
    divides over the processes); otherwise a ``ValueError`` names the rows, mesh and processes."""
    blocks: dict[int, set] = {}
    for device, index in sharding.devices_indices_map((1, rows)).items():
        part = index[1]
        blocks.setdefault(device.process_index, set()).add(
            (part.start or 0, rows if part.stop is None else part.stop)
        )
    shares = {}
    for process, parts in sorted(blocks.items()):
        first, end = min(a for a, _ in parts), max(b for _, b in parts)
        covered = sum(b - a for a, b in parts)
        shares[process] = (first, end) if covered == end - first else None
    n = len(shares)
    spans = sorted(s for s in shares.values() if s is not None)
    even = len(spans) == n and all(
        s == (i * rows // n, (i + 1) * rows // n) for i, s in enumerate(spans)
    )
    if not even or rows % n:
        axes = " x ".join(f"{a}={sharding.mesh.shape[a]}" for a in BATCH_AXES)
        raise ValueError(
            f"batch: a micro-batch of {rows} rows split over the mesh's batch axes ({axes}) does "
            f"not divide over the {n} processes (their rows: {shares}); make the batch axes' size "
            f"a multiple of the process count so each process reads its own share"
        )
    return shares


class MetricsWriter:
    """``metrics.jsonl`` (one JSON object per logging or eval step) and TensorBoard scalars.

    With ``enabled=False`` (processes other than 0 of a multi-host run) rows are returned but
    nothing is written."""

    def __init__(self, out: pathlib.Path, *, tensorboard: bool, enabled: bool = True):
        self.path = out / "metrics.jsonl"
        self.tb, self.enabled = None, enabled
        if tensorboard and enabled:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))

    def write(self, step: int, epoch: float, values: dict[str, float]) -> dict:
        row = {"step": step, "epoch": epoch, **{k: _clean(v) for k, v in values.items()}}
        if not self.enabled:
            return row
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                name = f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"
                self.tb.add_scalar(name, v, step)
            self.tb.flush()
        return row

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (a resumed run recomputes them)."""
        if not self.enabled or not self.path.exists():
            return
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        kept = [r for r in rows if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _clean(v: float):
    return v if math.isfinite(v) else str(v)
