"""model_export.busy: ``bench --busy`` spins one pinned process for exactly the block's duration."""

from __future__ import annotations

import os
import time

import pytest

from model_export.busy import busy_core, spinner_alive


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not os.path.exists("/proc/self/stat"),
                    reason="needs Linux (affinity, /proc)")
def test_spinner_runs_pinned_during_the_block_and_is_gone_after():
    with busy_core(settle=0.3) as spin:
        pid = spin["pid"]
        assert spinner_alive(pid)
        assert os.sched_getaffinity(pid) == {spin["core"]}
        c0 = _cpu_seconds(pid)
        time.sleep(0.5)
        assert _cpu_seconds(pid) > c0  # it is burning CPU
    assert not spinner_alive(pid)


def test_spinner_is_stopped_when_the_block_raises():
    with pytest.raises(KeyError):
        with busy_core(settle=0.1) as spin:
            raise KeyError("boom")
    assert not spinner_alive(spin["pid"])
