"""tests/harness/lanes.py with real child processes: stages at once, logs, results, failures."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from tests.harness.common import Report
from tests.harness.lanes import log_name, run_plan
from tests.harness.schedule import Stage

# A stand-in for `./run --lane NAME SEED RESULT`: sleeps, prints the stage lines, writes its row.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    name, seed, result, seconds, outcome = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
    seen = [row["name"] for row in json.load(open(seed))]
    print(f"[harness] === stage {name} ===", flush=True)
    print(f"{name} saw {seen}", flush=True)
    start = time.time()
    time.sleep(seconds)
    if outcome == "crash":
        sys.exit(3)
    row = {"name": name, "seconds": seconds, "passed": int(outcome == "pass"), "failed": int(outcome == "fail"), "started": start}
    json.dump([row], open(result, "w"))
    print(f"[harness] === stage {name}: {seconds:.1f} s ===", flush=True)
    """
)


def command_for(outcomes: dict[str, tuple[float, str]], script: Path):
    def command(stage: Stage, seed: Path, result: Path) -> list[str]:
        seconds, outcome = outcomes[stage.name]
        return [sys.executable, str(script), stage.name, str(seed), str(result), str(seconds), outcome]

    return command


def test_independent_stages_run_at_once_and_dependents_see_their_rows(tmp_path: Path, capsys) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stages = [Stage("a"), Stage("b"), Stage("c", needs=("a", "b"))]
    report = Report()
    run_plan(stages, 2, report, command_for({"a": (3.0, "pass"), "b": (3.0, "pass"), "c": (0.1, "pass")}, script), tmp_path, poll=0.05)
    rows = {r.name: r for r in report.stages}
    assert set(rows) == {"a", "b", "c"}
    a, b = rows["a"], rows["b"]
    assert a.started < b.started + b.seconds, "a and b did not run at the same time"
    assert b.started < a.started + a.seconds, "a and b did not run at the same time"
    assert rows["c"].started >= max(a.started + a.seconds, b.started + b.seconds)
    # c's lane was seeded with the rows of the stages finished before it.
    assert "c saw ['a', 'b']" in (tmp_path / log_name("c")).read_text() or "c saw ['b', 'a']" in (tmp_path / log_name("c")).read_text()
    console = capsys.readouterr().out
    for name in "abc":
        assert f"[harness] === stage {name}: " in console  # CI reads these lines
    assert "a saw" not in console  # a concurrent stage's other output stays in its log


def test_a_crashed_or_failed_stage_is_reported_with_its_log_and_skips_what_needs_it(tmp_path: Path, capsys) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stages = [Stage("crash"), Stage("fail"), Stage("after-crash", needs=("crash",)), Stage("free", after=("fail",))]
    outcomes = {"crash": (0.1, "crash"), "fail": (0.1, "fail"), "after-crash": (0.1, "pass"), "free": (0.1, "pass")}
    report = Report()
    run_plan(stages, 2, report, command_for(outcomes, script), tmp_path, poll=0.05)
    rows = {r.name: r for r in report.stages}
    assert rows["crash"].failed == 1
    assert "ended with exit 3" in (rows["crash"].error or "")
    assert rows["fail"].failed == 1
    assert rows["after-crash"].error == "not run: needs crash, which failed"
    assert rows["free"].passed == 1
    console = capsys.readouterr().out
    assert f"--- last lines of {tmp_path / log_name('fail')} ---" in console
    assert json.loads((tmp_path / "lanes" / "free.seed.json").read_text())  # seeded with the rows before it


def test_a_stage_nothing_else_can_run_next_to_writes_to_the_console(tmp_path: Path, capsys) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    report = Report()
    run_plan([Stage("only")], 3, report, command_for({"only": (0.1, "pass")}, script), tmp_path, poll=0.05)
    assert "only saw []" in capsys.readouterr().out
