"""Run a plan's stages, several at a time, each in a process of its own (a "lane").

tests/harness/schedule.py decides which stage starts when; this module starts it as
``command(stage, seed, result)`` (`./run --lane NAME ...`), its output going to
``tests/output/stage-NAME.log``. The console gets each stage's start and end lines
(``[harness] === stage ...``, which CI reads) and, for a failed stage, the end of its log.
A stage that nothing else can run next to (everything still pending waits for it) writes to
the console as well, as a sequential run always did.

The results travel as JSON: the seed holds the rows of the stages finished so far (a stage
may look at them, e.g. ``ee`` at ``site:first-run``), the result file the rows the lane adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from .common import Report, StageResult, log
from .schedule import Scheduler, Stage

TAIL_LINES = 80
STAGE_LINE = "[harness] === stage "


def log_name(stage: str) -> str:
    return "stage-" + stage.replace(":", "-").replace("/", "-") + ".log"


def write_rows(path: Path, rows: Sequence[StageResult]) -> None:
    path.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")


def read_rows(path: Path) -> list[StageResult]:
    if not path.exists():
        return []
    return [StageResult(**row) for row in json.loads(path.read_text())]


class Lane:
    """One stage running as a child process."""

    def __init__(self, stage: Stage, argv: list[str], log_file: Path, result: Path, console: bool) -> None:
        self.stage = stage
        self.log_file = log_file
        self.result = result
        self.console = console
        self.started = time.time()
        self._clock = time.monotonic()
        env = {**os.environ, **dict(stage.env)}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace")
        self._reader = threading.Thread(target=self._copy, name=f"lane-{stage.name}", daemon=True)
        self._reader.start()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._clock

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        with self.log_file.open("w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                if self.console or line.startswith(STAGE_LINE):
                    sys.stdout.write(line)  # one write per line (see common.log)
                    sys.stdout.flush()

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)

    def collect(self) -> list[StageResult]:
        """The rows the stage recorded; a row of its own when the process ended without any."""
        self._reader.join(timeout=30)
        rows = read_rows(self.result)
        rc = self.proc.returncode
        if not rows or (rc != 0 and not any(r.failed or r.error for r in rows)):
            rows.append(
                StageResult(
                    name=self.stage.name,
                    seconds=self.seconds,
                    failed=1,
                    error=f"the stage's process ended with exit {rc} (see {self.log_file})",
                    started=self.started,
                )
            )
        return rows

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = self.log_file.read_text(errors="replace").splitlines()[-lines:] if self.log_file.exists() else []
        return "\n".join(text)


def busy_cpu_seconds(stat: Path = Path("/proc/stat")) -> float:
    """This machine's busy CPU seconds since boot: the first line of /proc/stat but idle and iowait
    (guest time is already counted in user)."""
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Shares the machine's busy CPU time out among the stages running, evenly, between samples.
    The engines' containers run outside the stage's process tree, so a process's own rusage would
    miss most of what a stage costs; the machine's counter sees all of it."""

    def __init__(self, read: Callable[[], float] = busy_cpu_seconds) -> None:
        self._read = read
        self._last = read()
        self.spent: dict[str, float] = {}

    def sample(self, running: Sequence[str]) -> None:
        now = self._read()
        delta, self._last = max(0.0, now - self._last), now
        for name in running:
            self.spent[name] = self.spent.get(name, 0.0) + delta / len(running)


def passed(rows: Sequence[StageResult]) -> bool:
    return bool(rows) and not any(r.failed or r.error for r in rows)


def run_plan(
    stages: Sequence[Stage],
    jobs: int,
    report: Report,
    command: Callable[[Stage, Path, Path], list[str]],
    output: Path,
    *,
    poll: float = 0.5,
    nice_others: int = 0,
) -> None:
    """Run ``stages`` (a plan, checked by the Scheduler) to the end, adding every row to ``report``.
    Stages off the plan's longest paths start at nice ``nice_others`` (Scheduler.niceness)."""
    scheduler = Scheduler(stages, jobs)
    work = output / "lanes"
    work.mkdir(parents=True, exist_ok=True)
    running: dict[str, Lane] = {}
    meter = CpuMeter()
    try:
        while not scheduler.done:
            started, skipped = scheduler.step()
            for stage, reason in skipped:
                log(f"stage {stage.name} {reason}")
                report.stages.append(StageResult(name=stage.name, seconds=0.0, failed=1, error=reason, started=time.time()))
            for stage in started:
                seed, result = work / f"{stage.name}.seed.json", work / f"{stage.name}.result.json"
                write_rows(seed, report.stages)
                result.unlink(missing_ok=True)
                console = scheduler.alone(stage.name)
                log_file = output / log_name(stage.name)
                others = [n for n in scheduler.running if n != stage.name]
                nice = scheduler.niceness(stage.name, nice_others)
                log(
                    f">>> {stage.name} started; output in {log_file}"
                    + (f" (next to {', '.join(others)})" if others else "")
                    + (f" at nice {nice}: off the longest paths" if nice else "")
                )
                argv = command(stage, seed, result)
                running[stage.name] = Lane(stage, ["nice", "-n", str(nice), *argv] if nice else argv, log_file, result, console)
            while running and all(lane.poll() is None for lane in running.values()):
                time.sleep(poll)
                meter.sample(list(running))
            meter.sample(list(running))
            for name, lane in [(n, lane) for n, lane in running.items() if lane.poll() is not None]:
                del running[name]
                rows = lane.collect()
                _charge(rows, name, meter.spent.get(name, 0.0))
                report.stages.extend(rows)
                ok = passed(rows)
                scheduler.finish(name, ok)
                log(f"<<< {name} {'passed' if ok else 'FAILED'} in {lane.seconds:.1f} s")
                if not ok and not lane.console:
                    print(f"--- last lines of {lane.log_file} ---\n{lane.tail()}\n--- end of {lane.log_file} ---", flush=True)
    finally:
        meter.sample(list(running))
        for name, lane in running.items():
            lane.stop()
            rows = lane.collect()
            _charge(rows, name, meter.spent.get(name, 0.0))
            report.stages.extend(rows)


def _charge(rows: Sequence[StageResult], stage: str, cpu: float) -> None:
    """Put a lane's CPU seconds on its stage's row (else its last row: a lane may record sub-stages)."""
    if rows:
        row = next((r for r in rows if r.name == stage), rows[-1])
        row.cpu = cpu
