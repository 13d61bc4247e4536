"""The multi-host wrapper: single-process no-op and argument checks (a real multi-host launch
cannot run in the test suite)."""

import jax
import pytest

from jaxpref.llm import distributed


def test_single_process_is_a_no_op(monkeypatch):
    for name in ("JAXPREF_COORDINATOR", "JAXPREF_NUM_PROCESSES", "JAXPREF_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.initialize()
    assert info == (0, 1, jax.local_device_count(), jax.device_count())
    assert distributed.initialize(num_processes=1).num_processes == 1
    assert distributed.is_coordinator()


def test_bad_arguments(monkeypatch):
    with pytest.raises(ValueError, match="process_id: must be in \\[0, 2\\), got 5"):
        distributed.initialize("localhost:1234", 2, 5)
    with pytest.raises(ValueError, match="num_processes"):
        distributed.initialize("localhost:1234", 0, 0)
    monkeypatch.setenv("JAXPREF_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAXPREF_NUM_PROCESSES: expected an integer"):
        distributed.initialize()
