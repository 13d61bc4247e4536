"""One process of the multi-host tests (tests/test_train_multihost.py); not a test module.

``python multihost_worker.py JOB.json``: JOB names the role, the process layout, the task's data
and model, and a folder for the results. Roles:

- ``two``: one of two processes (4 CPU devices each, an 8-device mesh): bad inputs first (each
  must fail on every process before any step), then DPO killed after its step-2 checkpoint,
  resumed to step 3, and the step-3 checkpoint restored again by both processes.
- ``count``: process 1 is told there are 3 processes; the coordinator has 2.
- ``one``: a single process with 8 CPU devices: the same DPO uninterrupted, and the two-process
  checkpoint restored onto its mesh.
"""

import json
import os
import pathlib
import sys

job = json.loads(pathlib.Path(sys.argv[1]).read_text())
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={job['local_devices']}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

if job.get("cache"):  # the resumed run reuses the first run's compiled step
    jax.config.update("jax_compilation_cache_dir", job["cache"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

from jaxpref.llm import distributed  # noqa: E402

if job["num_processes"] > 1:
    try:
        distributed.initialize(
            f"localhost:{job['port']}",
            job.get("asked_processes", job["num_processes"]),  # ``count``: one process lies
            job["process_id"],
            initialization_timeout=job.get("init_timeout", 60),
        )
    except ValueError as err:
        if job["role"] != "count":
            raise
        out = pathlib.Path(job["out"]) / f"count.{job['process_id']}.json"
        out.write_text(json.dumps(str(err)))
        sys.exit(0)

from jaxpref.train import DPOConfig, make_mesh, train  # noqa: E402
from jaxpref.train.checkpoint import Checkpointer  # noqa: E402

OUT = pathlib.Path(job["out"])
PID = jax.process_index()
import time  # noqa: E402

T0 = time.time()
QUIET = dict(
    log=lambda m: print(f"{time.time() - T0:6.1f}s cpu {time.process_time():.1f} {m}", flush=True)
)


def config(out, **kw):
    base = dict(
        model_name_or_path=job["model"],
        dataset_name=job["data"],
        output_dir=str(out),
        max_length=24,
        max_prompt_length=12,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_steps=3,
        save_steps=2,
        logging_steps=1,
        disable_tqdm=True,
        length_buckets=1,
        dataset_test_split="none",
        mesh="data=1,fsdp=8",
    )
    return DPOConfig(**{**base, **kw})


def report(name, value):
    """Each process writes its own findings; the test reads them."""
    path = OUT / f"{name}.{PID}.json"
    path.write_text(json.dumps(value))


def failure(fn):
    try:
        fn()
    except ValueError as err:
        return str(err)
    return None


def flat_params(state):
    host = distributed.to_host(state)  # every process takes part in the gather
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(host)}


def target_of(state):
    abstract = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)  # noqa: E731
    return jax.tree.map(
        abstract,
        {
            "params": state.params,
            "opt_state": state.opt_state,
            "step": state.step,
            "rng": state.rng,
        },
    )


class Killed(Exception):
    pass


def die_at_3(step, _):
    QUIET["log"](f"step {step}")
    if step == 3:  # after the step-2 checkpoint: step 3 is lost with the "killed" processes
        raise Killed


if job["role"] == "two":
    local = make_mesh(1, 4, 1, devices=jax.local_devices())
    report(
        "bad",
        {
            "local_mesh": failure(lambda: train(config(OUT / "bad_mesh"), mesh=local, **QUIET)),
            "tensor_only": failure(
                lambda: train(config(OUT / "bad_batch", mesh="tensor=8"), **QUIET)
            ),
            "missing_model_on_1": failure(
                lambda: train(
                    config(OUT / "bad_model", model_name_or_path=job["model"] + ("_x" * PID)),
                    **QUIET,
                )
            ),
        },
    )
    run = OUT / "two"
    try:
        train(config(run), on_step=die_at_3, **QUIET)
    except Killed:
        pass
    result = train(config(run, resume=True), **QUIET)
    params = flat_params(result.fit.state.params)
    with Checkpointer(run / "checkpoints") as ckpt:
        restored = ckpt.restore(target_of(result.fit.state), step=3)
        meta = ckpt.metadata(step=3)
    again = flat_params(restored["params"])
    report(
        "two",
        {
            "restored_equal": all(np.array_equal(again[k], v) for k, v in params.items()),
            "metadata": meta,
            "history_steps": [r["step"] for r in result.history],
        },
    )
    if PID == 0:
        np.savez(OUT / "two_params.npz", **params)
else:
    result = train(config(OUT / "one"), **QUIET)
    params = flat_params(result.fit.state.params)
    np.savez(OUT / "one_params.npz", **params)
    with Checkpointer(OUT / "two" / "checkpoints") as ckpt:
        restored = ckpt.restore(target_of(result.fit.state), step=3)
    np.savez(OUT / "restored_params.npz", **flat_params(restored["params"]))
print(f"worker {job['role']} {PID}: done", flush=True)
