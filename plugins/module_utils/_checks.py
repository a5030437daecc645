# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check records (name, required, passed, seconds, detail), their summary, and pure parsers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Tuple

# Result of one probe: (passed, detail). A failing detail says what to do.
# typing.Tuple, not tuple[...]: this line runs when the module is imported on the
# managed host, whose Python may be 3.8 (builtin generics need 3.9).
Outcome = Tuple[bool, str]


@dataclass
class Check:
    name: str
    required: bool
    passed: bool
    seconds: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["seconds"] = round(self.seconds, 3)
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Check:
        return cls(str(record["name"]), bool(record["required"]), bool(record["passed"]), float(record["seconds"]), str(record["detail"]))


class CheckList:
    """Runs probes, times them, and keeps their records in order."""

    def __init__(self, required: Iterable[str]) -> None:
        self.required = set(required)
        self.checks: list[Check] = []

    def run(self, name: str, probe: Callable[[], Outcome]) -> Check:
        started = time.monotonic()
        try:
            passed, detail = probe()
        except Exception as exc:
            passed, detail = False, f"the probe itself failed: {type(exc).__name__}: {exc}"
        check = Check(name, name in self.required, bool(passed), time.monotonic() - started, detail)
        self.checks.append(check)
        return check

    def skip(self, name: str, reason: str) -> Check:
        """Record a check that could not run because an earlier one failed."""
        check = Check(name, name in self.required, False, 0.0, f"not run: {reason}")
        self.checks.append(check)
        return check

    def summary(self) -> dict[str, Any]:
        return summarize(self.checks)


def summarize(checks: list[Check]) -> dict[str, Any]:
    failed = [c.name for c in checks if not c.passed]
    required_failed = [c.name for c in checks if c.required and not c.passed]
    return {
        "total": len(checks),
        "passed": len(checks) - len(failed),
        "failed": failed,
        "required_failed": required_failed,
        "ok": not required_failed,
        "seconds": round(sum(c.seconds for c in checks), 3),
    }


def format_table(checks: list[Check]) -> str:
    """A plain-text table of the checks (for humans, e.g. a debug message)."""
    rows = [("name", "required", "passed", "seconds", "detail")]
    rows += [(c.name, str(c.required), str(c.passed), f"{c.seconds:.2f}", c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


# ---------------------------------------------------------------- engine facts
@dataclass
class EngineFacts:
    name: str = "unknown"  # docker | podman | unknown
    version: str = ""
    rootless: bool | None = None
    cgroup_version: str = ""
    cgroup_driver: str = ""
    storage_driver: str = ""
    storage_options: str = ""
    security_options: tuple[str, ...] = ()


def engine_from_version_text(text: str) -> str:
    """`docker --version` says whether the shim is Podman ("podman version 4.3.1")."""
    lowered = text.lower()
    if "podman" in lowered:
        return "podman"
    if "docker" in lowered:
        return "docker"
    return "unknown"


def parse_info(engine: str, text: str) -> EngineFacts:
    """Facts from `docker info --format '{{json .}}'` (Docker) or its Podman equivalent."""
    data = json.loads(text)
    if engine == "podman":
        host = data.get("host", {})
        security = host.get("security", {})
        cgroup = str(host.get("cgroupVersion", "")).lstrip("v")
        return EngineFacts(
            name="podman",
            version=str(data.get("version", {}).get("Version", "")),
            rootless=bool(security.get("rootless")),
            cgroup_version=cgroup,
            cgroup_driver=str(host.get("cgroupManager", "")),
            storage_driver=str(data.get("store", {}).get("graphDriverName", "")),
            storage_options=json.dumps(data.get("store", {}).get("graphOptions") or {}, sort_keys=True),
        )
    options = tuple(str(o) for o in data.get("SecurityOptions") or ())
    return EngineFacts(
        name="docker",
        version=str(data.get("ServerVersion", "")),
        rootless=any("rootless" in o for o in options),
        cgroup_version=str(data.get("CgroupVersion", "")),
        cgroup_driver=str(data.get("CgroupDriver", "")),
        storage_driver=str(data.get("Driver", "")),
        security_options=options,
    )


# Keys of `docker info` / `podman info` that change while nothing about the engine does:
# counters, clocks, free memory and load (compared in lower case, at any depth).
VOLATILE_INFO_KEYS = frozenset(
    k.lower()
    for k in (
        # Docker
        *("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images"),
        *("SystemTime", "NFd", "NGoroutines", "NEventsListener", "Warnings"),
        # Podman
        *("uptime", "memFree", "swapFree", "cpuUtilization", "freeLocks"),
        *("containerStore", "imageStore", "volumeStore", "graphRootUsed", "graphRootAllocated"),
    )
)


def stable_info(data: Any) -> Any:
    """The engine's `info` without what changes from one call to the next (VOLATILE_INFO_KEYS).

    What remains (versions, drivers, cgroup mode, runtimes, security options, registries,
    storage options) is what the compatibility checks depend on; a reused result is only as
    good as this, so anything uncertain stays in."""
    if isinstance(data, dict):
        return {k: stable_info(v) for k, v in sorted(data.items()) if str(k).lower() not in VOLATILE_INFO_KEYS}
    if isinstance(data, list):
        return [stable_info(v) for v in data]
    return data


# ---------------------------------------------------------------- cgroup limits
UNLIMITED = "unlimited"


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines (the probes print their findings this way)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    return values


def effective_limits(values: dict[str, str]) -> dict[str, str]:
    """Normalise the limits a container sees in its own cgroup files (v1 or v2).

    Returns ``memory`` (bytes), ``cpus`` (CPUs as a decimal string) and ``pids``,
    each ``unlimited`` when no limit applies or the file is missing.
    """
    limits = {"memory": UNLIMITED, "cpus": UNLIMITED, "pids": UNLIMITED}
    memory = values.get("memory.max") or values.get("memory.limit_in_bytes") or ""
    # cgroup v1 reports "no limit" as a huge page-aligned number.
    if memory.isdigit() and int(memory) < 2**62:
        limits["memory"] = memory
    quota, period = _cpu_quota(values)
    if quota > 0 and period > 0:
        limits["cpus"] = f"{quota / period:g}"
    pids = values.get("pids.max", "")
    if pids.isdigit():
        limits["pids"] = pids
    return limits


def _cpu_quota(values: dict[str, str]) -> tuple[int, int]:
    if "cpu.max" in values:
        quota, _sep, period = values["cpu.max"].partition(" ")
        return (int(quota) if quota.isdigit() else -1, int(period) if period.isdigit() else 0)
    quota = values.get("cpu.cfs_quota_us", "-1")
    period = values.get("cpu.cfs_period_us", "0")
    return (int(quota) if quota.lstrip("-").isdigit() else -1, int(period) if period.isdigit() else 0)
