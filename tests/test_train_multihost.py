"""Multi-host training, on one machine: two JAX processes on localhost (a coordinator on a free
port, gloo CPU collectives, 4 CPU devices each: an 8-device mesh) run DPO with the batch split
over the processes and the parameters over ``fsdp``, killed after a checkpoint and resumed; the
result equals one process with 8 devices, the checkpoint written by both is read back by two
processes and by one, metrics and the exported model are written once, and bad launches fail on
every process before any step. The processes run tests/multihost_worker.py; each launch is
killed at its timeout, and a port clash is retried on another port."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import llm_task
import numpy as np
import pytest
from safetensors.numpy import load_file

TESTS = pathlib.Path(__file__).resolve().parent
WORKER = TESTS / "multihost_worker.py"
TIMEOUT_S = 900  # per launch (generous: a loaded 2-core machine); the processes are killed then
CLASH = ("address already in use", "failed to add port", "failed to bind")
# Float32 round-off between the two runs: gloo's cross-process reductions may add in another
# order than one process's (measured: see the assertion messages).
RTOL, ATOL = 1e-5, 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(local_devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX", "XLA"))}
    root = str(TESTS.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, str(TESTS)])
    env["JAX_PLATFORMS"] = "cpu"
    count = "--xla_force_host_platform_device_count"  # the suite's other flags (conftest) kept
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(count)]
    env["XLA_FLAGS"] = " ".join([f"{count}={local_devices}", *kept])
    return env


def launch(commands, *, local_devices: int, tmp: pathlib.Path, timeout: float = TIMEOUT_S):
    """Run ``commands(port)`` (one argv per process) together; ``[(returncode, output)]``.

    Every process is killed at the timeout (then the test fails with their output); a launch
    whose coordinator could not bind its port is retried on another."""
    for _ in range(3):
        port = _free_port()
        procs, logs = [], []
        deadline = time.monotonic() + timeout
        try:
            for i, argv in enumerate(commands(port)):
                log = open(tmp / f"process_{port}_{i}.log", "w+")  # noqa: SIM115
                logs.append(log)
                procs.append(
                    subprocess.Popen(
                        argv,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_env(local_devices),
                        cwd=tmp,
                    )
                )
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            timed_out = [p.poll() is None for p in procs]
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            outs = []
            for log in logs:
                log.seek(0)
                outs.append(log.read())
                log.close()
        if any(timed_out):
            tails = "\n".join(f"--- process {i}\n{o[-3000:]}" for i, o in enumerate(outs))
            pytest.fail(f"the processes did not finish within {timeout} s (killed):\n{tails}")
        if any(any(c in o.lower() for c in CLASH) for o in outs):
            continue  # another program took the port between the probe and the launch
        return [(p.returncode, o) for p, o in zip(procs, outs)]
    pytest.fail("three launches in a row found their coordinator port taken")


def _workers(tmp, jobs):
    def commands(port):
        out = []
        for i, job in enumerate(jobs):
            path = tmp / f"job_{job['role']}_{i}.json"
            path.write_text(json.dumps({**job, "port": port}))
            out.append([sys.executable, str(WORKER), str(path)])
        return out

    return commands


def _check_ok(results):
    for i, (code, out) in enumerate(results):
        assert code == 0, f"process {i} exited {code}:\n{out[-4000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    data = llm_task.write_dataset(tmp / "data")
    base = llm_task.make_model_dir(tmp / "base")
    out = tmp / "out"
    out.mkdir()
    job = dict(model=str(base), data=str(data), out=str(out))
    started = time.monotonic()
    two = [dict(job, role="two", num_processes=2, process_id=i, local_devices=4) for i in (0, 1)]
    _check_ok(launch(_workers(tmp, two), local_devices=4, tmp=tmp))
    one = [dict(job, role="one", num_processes=1, process_id=0, local_devices=8)]
    _check_ok(launch(_workers(tmp, one), local_devices=8, tmp=tmp))
    return {"out": out, "tmp": tmp, "base": base, "data": data, "s": time.monotonic() - started}


def _read(out, name):
    return [json.loads((out / f"{name}.{i}.json").read_text()) for i in (0, 1)]


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_two_processes_train_like_one_with_eight_devices(runs):
    out = runs["out"]
    two, one = _npz(out / "two_params.npz"), _npz(out / "one_params.npz")
    assert two.keys() == one.keys() and len(two) > 5
    worst = max(float(np.max(np.abs(two[k] - one[k]))) for k in two)
    for k in two:
        np.testing.assert_allclose(two[k], one[k], rtol=RTOL, atol=ATOL, err_msg=f"{k} {worst=}")
    exported = load_file(str(out / "two" / "model.safetensors"))
    reference = load_file(str(out / "one" / "model.safetensors"))
    assert exported.keys() == reference.keys()
    for k, w in reference.items():
        np.testing.assert_allclose(exported[k], w, rtol=RTOL, atol=ATOL, err_msg=k)


def test_checkpoint_of_two_processes_restores_on_two_and_on_one(runs):
    out = runs["out"]
    for report in _read(out, "two"):
        assert report["restored_equal"]  # step 3 read back by both processes, bit for bit
        meta = report["metadata"]
        assert meta["process_rows"] == {"0": [0, 8], "1": [8, 16]}  # each its own half
        assert meta["data_position"]["examples_seen"] == 48
    restored, two = _npz(out / "restored_params.npz"), _npz(out / "two_params.npz")
    for k in two:  # read onto one process's 8-device mesh, bit for bit
        np.testing.assert_array_equal(restored[k], two[k], err_msg=k)


def test_metrics_and_export_are_written_by_process_zero_once(runs):
    run = runs["out"] / "two"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # killed at 3, resumed: no row twice
    assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
    assert not list(run.glob("*.tmp")) and not (run / ".jaxpref.lock").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [
        "2",
        "3",
    ]
    a, b = _read(runs["out"], "two")
    assert a["history_steps"] == b["history_steps"] == [3]


def test_bad_inputs_fail_on_every_process_before_any_step(runs):
    out = runs["out"]
    for pid, bad in enumerate(_read(out, "bad")):
        assert "mesh: data=1 x fsdp=4 x tensor=1 has 4 devices but the 2 processes have 8" in (
            bad["local_mesh"] or ""
        )
        assert "micro-batch of 2 rows" in (bad["tensor_only"] or "")
        assert "does not divide over the 2 processes" in bad["tensor_only"]
        missing = bad["missing_model_on_1"] or ""
        assert "base_x' is not a model directory" in missing
        assert missing.startswith("another process failed its check (process 1:") == (pid == 0)
    for name in ("bad_mesh", "bad_batch", "bad_model"):
        assert not (out / name / "checkpoints").exists()


def test_a_process_count_unlike_the_coordinators_fails_on_every_process(runs):
    """Process 1 is told there are 3 processes, the coordinator (process 0) 2."""
    tmp, out = runs["tmp"], runs["out"]
    job = dict(role="count", num_processes=2, local_devices=4, out=str(out))
    jobs = [dict(job, process_id=0), dict(job, process_id=1, asked_processes=3)]
    _check_ok(launch(_workers(tmp, jobs), local_devices=4, tmp=tmp, timeout=300))
    for i in (0, 1):
        message = json.loads((out / f"count.{i}.json").read_text())
        assert "the coordinator counts 2 processes" in message
        assert "process 1: num_processes=3, process_id=1" in message
