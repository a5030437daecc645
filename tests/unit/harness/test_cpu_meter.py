"""The harness's share-out of the machine's CPU time among the stages running (tests/harness/lanes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.common import StageResult
from tests.harness.lanes import CpuMeter, _charge, busy_cpu_seconds


def test_busy_seconds_leave_out_idle_and_iowait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 5 50 1000 400 3 2 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    assert busy_cpu_seconds(stat) == pytest.approx((100 + 5 + 50 + 3 + 2) / 100)


def test_each_sample_is_shared_evenly_among_the_stages_running():
    readings = iter([10.0, 14.0, 20.0, 20.0])
    meter = CpuMeter(read=lambda: next(readings))
    meter.sample(["a", "b"])  # 4 s shared by two
    meter.sample(["a"])  # 6 s for a alone
    meter.sample([])  # nothing to charge
    assert meter.spent == {"a": pytest.approx(8.0), "b": pytest.approx(2.0)}


def test_a_lane_s_cpu_goes_on_its_own_row_not_on_a_sub_stage():
    rows = [StageResult(name="k8s:cluster+node", seconds=1.0), StageResult(name="k8s:a", seconds=2.0)]
    _charge(rows, "k8s:a", 42.0)
    assert [r.cpu for r in rows] == [0.0, 42.0]
    rows = [StageResult(name="images:debian13", seconds=1.0)]
    _charge(rows, "images", 7.0)
    assert rows[0].cpu == 7.0
