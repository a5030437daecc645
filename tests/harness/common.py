"""Shared helpers of the test harness: paths, command running, stage records."""

from __future__ import annotations

import hashlib
import os
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


class HarnessError(RuntimeError):
    """A failure the harness explains in one line (missing prerequisite, bad recipe)."""


def log(msg: str) -> None:
    print(f"[harness] {msg}", flush=True)


def run(
    argv: list[str],
    *,
    check: bool = True,
    capture: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    quiet: bool = False,
) -> subprocess.CompletedProcess[str]:
    if not quiet:
        log("$ " + shlex.join(argv))
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        argv,
        check=False,
        text=True,
        env=full_env,
        cwd=cwd,
        input=input_text,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
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


@dataclass
class StageResult:
    name: str
    seconds: float
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    error: str | None = None


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

    def summary(self) -> str:
        lines = ["", "Stage wall times:"]
        for s in self.stages:
            status = "FAILED" if s.failed or s.error else "ok"
            lines.append(
                f"  {s.name:<32} {s.seconds:8.1f} s  {status:<6} passed={s.passed} failed={s.failed} skipped={s.skipped}"
                + (f"  ({s.error})" if s.error else "")
            )
        lines.append(f"  {'total':<32} {sum(s.seconds for s in self.stages):8.1f} s")
        return "\n".join(lines)


class _StageTimer:
    def __init__(self, report: Report, name: str) -> None:
        self.report = report
        self.result = StageResult(name=name, seconds=0.0)

    def __enter__(self) -> StageResult:
        log(f"=== stage {self.result.name} ===")
        self._start = time.monotonic()
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
