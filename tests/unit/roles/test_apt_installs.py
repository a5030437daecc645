"""Every role installs Debian packages the same way: apt's ``cache_valid_time`` alone trusts the
mtime of /var/lib/apt/lists, which a just-built image whose lists were emptied has too (the
install then fails with "No package matching ..."). So each apt task with a ``cache_valid_time``
takes it from a probe, registered just before in the same file, that asks apt whether its lists
hold any package index and can install the packages: 3600 when they can, 0 (update now) when not.

The behaviour is tested for real in molecule/nanoclaw_podman (verify: lists emptied just now); this test
keeps the other roles on the same mechanism."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
VALID_TIME = re.compile(r"^\{\{ 3600 if (__nanoclaw_\w+_apt_probe|__nanoclaw_apt_probe)\.rc == 0 else 0 \}\}$")


def _tasks(items: list | None) -> Iterator[dict]:
    for task in items or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def _apt_tasks() -> Iterator[tuple[Path, list[dict], dict]]:
    for path in sorted(REPO.glob("roles/*/tasks/*.yml")):
        tasks = list(_tasks(yaml.safe_load(path.read_text())))
        for task in tasks:
            if "ansible.builtin.apt" in task:
                yield path, tasks, task


def test_the_roles_install_packages_with_apt() -> None:
    roles = {found[0].parts[-3] for found in _apt_tasks() if "cache_valid_time" in found[2]["ansible.builtin.apt"]}
    assert {"podman", "docker", "nanoclaw"} <= roles


def test_every_cache_valid_time_comes_from_the_lists_probe() -> None:
    for path, tasks, task in _apt_tasks():
        args = task["ansible.builtin.apt"]
        if "cache_valid_time" not in args:
            continue
        where = f"{path.relative_to(REPO)}: {task['name']}"
        assert args.get("update_cache") is True, where
        match = VALID_TIME.match(str(args["cache_valid_time"]))
        assert match, f"{where}: cache_valid_time {args['cache_valid_time']!r} does not come from the apt lists probe"
        probe = next((t for t in tasks if t.get("register") == match.group(1)), None)
        assert probe is not None, f"{where}: no task of the file registers {match.group(1)}"
        assert tasks.index(probe) < tasks.index(task), where
        cmd = probe["ansible.builtin.shell"]["cmd"]
        assert "ls /var/lib/apt/lists/*_Packages*" in cmd, where
        assert "apt-get install --simulate" in cmd, where
        for key in ("changed_when", "failed_when", "check_mode"):
            assert probe.get(key) is False, f"{where}: the probe needs {key}: false"
