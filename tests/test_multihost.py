"""Two processes on localhost, 4 CPU devices each, one global mesh of 8 (gloo collectives)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from jaxdl.parallel.multihost import settings_from_env
from jaxdl.registry import ConfigError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_sum_across_hosts():
    port = free_port()
    procs = []
    for pid in range(2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
               "JAXDL_COORDINATOR": f"127.0.0.1:{port}", "JAXDL_NUM_PROCESSES": "2",
               "JAXDL_PROCESS_ID": str(pid)}
        procs.append(subprocess.Popen([sys.executable, "-m", "jaxdl.parallel.multihost"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("two-process run timed out")
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["process"] for r in results) == [0, 1]
    for r in results:
        assert (r["processes"], r["devices"], r["local_devices"]) == (2, 8, 4)
        # 0 + 1 + ... + 31: each process holds only half of the rows.
        assert r["psum"] == r["sum"] == r["expected"] == 496.0


def test_settings_errors_name_the_variable():
    assert settings_from_env({}) is None
    with pytest.raises(ConfigError, match="JAXDL_PROCESS_ID is not set"):
        settings_from_env({"JAXDL_COORDINATOR": "h:1", "JAXDL_NUM_PROCESSES": "2"})
    with pytest.raises(ConfigError, match=r"JAXDL_PROCESS_ID=2: expected an integer in \[0, 2\)"):
        settings_from_env({"JAXDL_COORDINATOR": "h:1", "JAXDL_NUM_PROCESSES": "2",
                           "JAXDL_PROCESS_ID": "2"})
    got = settings_from_env({}, coordinator="127.0.0.1:5", num_processes=2, process_id=1)
    assert got == {"coordinator": "127.0.0.1:5", "num_processes": 2, "process_id": 1}
