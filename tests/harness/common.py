"""Shared helpers of the test harness: paths, command running, stage records."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Everything the harness builds or downloads lives outside git, keyed by content,
# so a re-run reuses it and a fresh clone on the same machine does too.
CACHE = Path(os.environ.get("NANOCLAW_CACHE", Path.home() / ".cache" / "nanoclaw-provision"))
# Per checkout: several clones (or worktrees) may use the machine at once.
CHECKOUT_ID = hashlib.sha256(str(REPO).encode()).hexdigest()[:10]
STATE = CACHE / "state" / CHECKOUT_ID


# Every harness playbook run ends with its slowest tasks (install and build times, rerun costs).
PROFILE_ENV = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "15"}


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def parse_recap(lines: list[str]) -> dict[str, dict[str, int]]:
    """Per host ok/changed/unreachable/failed from ansible-playbook's PLAY RECAP."""
    recap: dict[str, dict[str, int]] = {}
    for line in lines:
        m = RECAP.match(line.strip())
        if m:
            host, *counts = m.groups()
            recap[host] = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts), strict=True))
    return recap


class HarnessError(RuntimeError):
    """A failure the harness explains in one line (missing prerequisite, bad recipe)."""


def log(msg: str) -> None:
    # One write per line: stages running at once forward their lines to the same console.
    sys.stdout.write(f"[harness] {msg}\n")
    sys.stdout.flush()


def run(
    argv: list[str],
    *,
    check: bool = True,
    capture: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    quiet: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; with ``timeout``, a command still running then is killed and returns 124 (as timeout(1))."""
    if not quiet:
        log("$ " + shlex.join(argv))
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            argv,
            check=False,
            text=True,
            env=full_env,
            cwd=cwd,
            input=input_text,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(argv, 124, "" if capture else None, f"timed out after {timeout} s" if capture else None)
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-5:] if capture else []
        raise HarnessError(f"command failed ({proc.returncode}): {shlex.join(argv)}" + ("\n  " + "\n  ".join(detail) if detail else ""))
    return proc


def require(binary: str, install: str) -> str:
    """Return the path of ``binary`` or fail naming the command that installs it."""
    path = shutil.which(binary)
    if not path:
        raise HarnessError(f"missing host prerequisite '{binary}': install it with `{install}`")
    return path


def sha256_of(*parts: str | bytes | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else part
        digest.update(data.encode() if isinstance(data, str) else data)
        digest.update(b"\0")
    return digest.hexdigest()


# What a stage found of its cache: "cold" (it built or downloaded it now), "warm" (reused it),
# "-" (the stage caches nothing).
COLD, WARM, NO_CACHE = "cold", "warm", "-"


@dataclass
class StageResult:
    name: str
    seconds: float
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    error: str | None = None
    cache: str = NO_CACHE
    # When the stage started (time.time()), for the table's offsets from the run's start.
    started: float = 0.0
    # This machine's busy CPU seconds while the stage ran, shared evenly with the stages running
    # next to it (tests/harness/lanes.py, from /proc/stat): what the stage costs a 2-core machine.
    cpu: float = 0.0


@dataclass
class Report:
    stages: list[StageResult] = field(default_factory=list)

    def stage(self, name: str):
        return _StageTimer(self, name)

    @property
    def passed(self) -> int:
        return sum(s.passed for s in self.stages)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stages)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.stages)

    def summary(self, wall: float | None = None, origin: float | None = None) -> str:
        """The stage table: start (minutes:seconds after ``origin``), wall time, cache, status, counts.
        Stages of a run overlap, so the total of the stage times is more than the run's ``wall`` time."""
        origin = origin if origin is not None else min((s.started for s in self.stages if s.started), default=0.0)
        lines = ["", "Stage wall times:", f"  {'stage':<32} {'start':>7} {'wall':>10} {'cpu':>8}  {'cache':<5} {'status':<6} counts"]
        for s in sorted(self.stages, key=lambda r: r.started or float("inf")):
            status = "FAILED" if s.failed or s.error else "ok"
            offset = max(0.0, s.started - origin) if s.started else 0.0
            lines.append(
                f"  {s.name:<32} {int(offset // 60):>4}:{int(offset % 60):02d} {s.seconds:8.1f} s {s.cpu:6.0f} s  {s.cache:<5} {status:<6}"
                f" passed={s.passed} failed={s.failed} skipped={s.skipped}" + (f"  ({s.error})" if s.error else "")
            )
        wall_sum, cpu_sum = sum(s.seconds for s in self.stages), sum(s.cpu for s in self.stages)
        lines.append(f"  {'total of the stage times':<32} {'':>7} {wall_sum:8.1f} s {cpu_sum:6.0f} s")
        if wall is not None:
            lines.append(f"  {'wall time of the run':<32} {'':>7} {wall:8.1f} s")
        return "\n".join(lines)


class _StageTimer:
    def __init__(self, report: Report, name: str) -> None:
        self.report = report
        self.result = StageResult(name=name, seconds=0.0)

    def __enter__(self) -> StageResult:
        log(f"=== stage {self.result.name} ===")
        self._start = time.monotonic()
        self.result.started = time.time()
        return self.result

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.result.seconds = time.monotonic() - self._start
        if exc is not None:
            self.result.error = str(exc).splitlines()[0] if str(exc) else exc_type.__name__
            if not self.result.failed:
                self.result.failed = 1
            print(f"[harness] stage {self.result.name} failed: {exc}", file=sys.stderr, flush=True)
        self.report.stages.append(self.result)
        log(f"=== stage {self.result.name}: {self.result.seconds:.1f} s ===")
        return exc is not None and isinstance(exc, (HarnessError, subprocess.SubprocessError))
