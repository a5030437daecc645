# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container engines behind one small interface.

:class:`ContainerSpec` says what to run, independent of how; an :class:`Engine`
runs it. :class:`CliEngine` drives the ``docker`` CLI (Docker, or Podman
through a shim or directly), exactly as NanoClaw's host process does. A
Kubernetes Job engine implements the same methods (run a spec attached with
stdin, start one detached, stop, list by label) without touching the callers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import Completed, Runner

HOST_GATEWAY = "--add-host=host.docker.internal:host-gateway"


@dataclass(frozen=True)
class Mount:
    host: str
    container: str
    read_only: bool = False

    def flag(self) -> str:
        return f"{self.host}:{self.container}" + (":ro" if self.read_only else "")


@dataclass
class ContainerSpec:
    """One agent container, engine-neutral. ``env`` is for non-secret values only."""

    name: str
    image: str
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: str | None = None
    command: list[str] = field(default_factory=list)
    interactive: bool = False
    host_gateway: bool = False
    extra_args: list[str] = field(default_factory=list)


def poll_gone(exists: Callable[[str], bool], name: str, seconds: float) -> bool:
    """Whether the container ``name`` was gone, asking ``exists`` every 0.25 s, within ``seconds``
    (--rm removal is asynchronous on some engines)."""
    deadline = time.monotonic() + seconds
    while exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


class Engine(ABC):
    """What the modules need from a container engine."""

    @abstractmethod
    def inspect_image(self, image: str) -> Completed:
        """Succeeds when ``image`` is present locally (never pulls)."""

    @abstractmethod
    def run_attached(
        self,
        spec: ContainerSpec,
        stdin_data: str | None,
        timeout: float,
        on_stdout: Callable[[str], None] | None = None,
        deadline: Callable[[], float | None] | None = None,
    ) -> Completed:
        """Run ``spec`` to its end or ``timeout``; ``deadline`` may bring the end forward (a monotonic instant)."""

    @abstractmethod
    def start(self, spec: ContainerSpec):
        """Start ``spec`` attached in the background; return a handle with ``poll()`` and ``wait()``."""

    @abstractmethod
    def stop(self, name: str, grace: int = 1) -> Completed:
        """Stop the container ``name``, killing it after ``grace`` seconds."""

    @abstractmethod
    def remove(self, name: str) -> Completed:
        """Remove the container ``name``, running or not."""

    @abstractmethod
    def names_with_label(self, label: str) -> list[str]:
        """Names of the containers, running or not, carrying ``label``."""

    @abstractmethod
    def exists(self, name: str) -> bool:
        """Whether a container ``name`` exists."""

    def wait_gone(self, name: str, seconds: float = 15.0) -> bool:
        """--rm removal is asynchronous on some engines: wait until ``name`` is gone."""
        return poll_gone(self.exists, name, seconds)


class CliEngine(Engine):
    """The docker CLI (or a compatible one) as the NanoClaw host calls it."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    @staticmethod
    def run_argv(spec: ContainerSpec) -> list[str]:
        argv = ["run"]
        if spec.interactive:
            argv.append("-i")
        argv += ["--rm", "--name", spec.name]
        for key, value in spec.labels.items():
            argv += ["--label", f"{key}={value}"]
        for mount in spec.mounts:
            argv += ["-v", mount.flag()]
        for key, value in spec.env.items():
            argv += ["-e", f"{key}={value}"]
        if spec.user:
            argv += ["--user", spec.user]
        if spec.host_gateway:
            argv.append(HOST_GATEWAY)
        argv += spec.extra_args
        if spec.entrypoint:
            argv += ["--entrypoint", spec.entrypoint]
        return [*argv, spec.image, *spec.command]

    def inspect_image(self, image):
        return self.runner.run(["image", "inspect", image], timeout=60)

    def run_attached(self, spec, stdin_data, timeout, on_stdout=None, deadline=None):
        return self.runner.run(self.run_argv(spec), stdin_data=stdin_data, timeout=timeout, on_stdout=on_stdout, deadline=deadline)

    def start(self, spec):
        return self.runner.popen(self.run_argv(spec))

    def stop(self, name, grace=1):
        return self.runner.run(["stop", "-t", str(grace), name], timeout=grace + 60)

    def remove(self, name):
        return self.runner.run(["rm", "-f", name], timeout=60)

    def names_with_label(self, label):
        done = self.runner.run(["ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"], timeout=60)
        return done.stdout.split() if done.ok else []

    @staticmethod
    def exists_argv(name: str) -> list[str]:
        """``ps`` listing the container ``name`` (anchored: no other container whose name contains it)."""
        return ["ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}"]

    def exists(self, name):
        done = self.runner.run(self.exists_argv(name), timeout=60)
        return name in done.stdout.split()
