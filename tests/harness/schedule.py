"""The stage graph of `./run` and the order its stages run in. Pure: no processes, no clock.

A :class:`Stage` declares what it needs instead of where it sits in a list:

* ``needs``: stages that must have PASSED first (a failed one means this stage does not run and
  counts as failed, "not run: needs X");
* ``after``: stages that must have FINISHED first, passed or not (an order, e.g. the demo
  targets' runs one after the other);
* ``uses``: named resources, each ``shared`` or ``exclusive`` (a readers-writer lock: any number
  of shared holders, or one exclusive holder): the demo targets, the harness's docker0 bridge, ...

Only edges between stages of the same plan count: ``./run unit`` runs without ``setup``.
:class:`Scheduler` starts a stage when its edges and resources allow it, at most ``jobs`` at a
time, the one with the longest estimated path to the end of the plan first (list scheduling by
critical path; ``estimate`` is a stage's measured cold wall time in seconds). :func:`simulate`
runs the same scheduler on the estimates: ``./run --plan`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SHARED = "shared"
EXCLUSIVE = "exclusive"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., None] | None = field(default=None, compare=False, repr=False)
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    uses: tuple[tuple[str, str], ...] = ()
    estimate: float = 60.0
    # Extra environment of the stage's process (e.g. a registry port of its own).
    env: tuple[tuple[str, str], ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        for resource, mode in self.uses:
            if mode not in (SHARED, EXCLUSIVE):
                raise ValueError(f"stage {self.name}: resource {resource} must be used {SHARED!r} or {EXCLUSIVE!r}, not {mode!r}")


class PlanError(ValueError):
    """The plan cannot be run: an unknown stage, a name twice, a cycle."""


def check_graph(stages: Sequence[Stage]) -> None:
    """Fail on a duplicate name or a cycle among the plan's edges."""
    names = [s.name for s in stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlanError(f"stages named twice: {', '.join(duplicates)}")
    by_name = {s.name: s for s in stages}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise PlanError("stage graph has a cycle: " + " -> ".join((*path, name)))
        state[name] = 1
        for dep in edges(by_name[name], by_name):
            visit(dep, (*path, name))
        state[name] = 2

    for name in names:
        visit(name, ())


def edges(stage: Stage, plan: Mapping[str, Stage]) -> tuple[str, ...]:
    """The stages of ``plan`` that ``stage`` waits for (needs first, then after)."""
    return tuple(d for d in (*stage.needs, *stage.after) if d in plan and d != stage.name)


def priorities(stages: Sequence[Stage]) -> dict[str, float]:
    """Each stage's estimate plus the longest chain of estimates of the stages that wait for it."""
    by_name = {s.name: s for s in stages}
    waiting: dict[str, list[str]] = {s.name: [] for s in stages}
    for s in stages:
        for dep in edges(s, by_name):
            waiting[dep].append(s.name)
    memo: dict[str, float] = {}

    def level(name: str) -> float:
        if name not in memo:
            memo[name] = by_name[name].estimate + max((level(w) for w in waiting[name]), default=0.0)
        return memo[name]

    return {s.name: level(s.name) for s in stages}


# A stage whose path to the end is at least this share of the longest one runs at full priority.
CRITICAL_SHARE = 0.5


class Scheduler:
    """Which stages of a plan to start now; the caller starts them and reports each end."""

    def __init__(self, stages: Sequence[Stage], jobs: int) -> None:
        check_graph(stages)
        self.stages = {s.name: s for s in stages}
        self.order = [s.name for s in stages]
        self.jobs = max(1, jobs)
        self.priority = priorities(stages)
        self.pending: list[str] = list(self.order)
        self.running: list[str] = []
        self.outcome: dict[str, bool] = {}
        self._holders: dict[str, tuple[str, set[str]]] = {}

    # ------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        return not self.pending and not self.running

    def failed_need(self, name: str) -> str | None:
        """The first need of ``name`` that finished without passing, if any."""
        return next((d for d in self.stages[name].needs if d in self.stages and self.outcome.get(d) is False), None)

    def _waits(self, name: str) -> bool:
        return any(d not in self.outcome for d in edges(self.stages[name], self.stages))

    def _free(self, stage: Stage) -> bool:
        for resource, mode in stage.uses:
            held = self._holders.get(resource)
            if held and held[1] and (mode == EXCLUSIVE or held[0] == EXCLUSIVE):
                return False
        return True

    def _acquire(self, stage: Stage) -> None:
        for resource, mode in stage.uses:
            holders = self._holders.get(resource, (mode, set()))[1]
            holders.add(stage.name)
            self._holders[resource] = (mode, holders)

    def _release(self, stage: Stage) -> None:
        for resource, _mode in stage.uses:
            held = self._holders.get(resource)
            if held:
                held[1].discard(stage.name)
                if not held[1]:
                    del self._holders[resource]

    # ------------------------------------------------------------ decisions
    def step(self) -> tuple[list[Stage], list[tuple[Stage, str]]]:
        """Stages to start now (marked running), and stages that will never run with the reason."""
        skipped: list[tuple[Stage, str]] = []
        again = True
        while again:  # a skipped stage may make its own dependents skip
            again = False
            for name in list(self.pending):
                failed = self.failed_need(name)
                if failed is not None:
                    self.pending.remove(name)
                    self.outcome[name] = False
                    skipped.append((self.stages[name], f"not run: needs {failed}, which failed"))
                    again = True
        started: list[Stage] = []
        ready = sorted((n for n in self.pending if not self._waits(n)), key=lambda n: (-self.priority[n], self.order.index(n)))
        for name in ready:
            if len(self.running) >= self.jobs:
                break
            stage = self.stages[name]
            if not self._free(stage):
                continue
            self._acquire(stage)
            self.pending.remove(name)
            self.running.append(name)
            started.append(stage)
        if not started and not self.running and self.pending and not skipped:
            raise PlanError(f"no stage can start: {', '.join(self.pending)}")  # unreachable with a checked graph
        return started, skipped

    def finish(self, name: str, passed: bool) -> None:
        self.running.remove(name)
        self._release(self.stages[name])
        self.outcome[name] = passed

    def niceness(self, name: str, others: int, share: float = CRITICAL_SHARE) -> int:
        """The nice value to start ``name`` with: 0 when its path to the end of the plan is at least
        ``share`` of the longest path still ahead (pending or running stages), else ``others``.
        On a machine with fewer cores than busy lanes the kernel then gives the stages the run
        waits for first their CPU, and the others the rest (nice 10 weighs about a tenth of nice 0)."""
        ahead = [self.priority[n] for n in (*self.pending, *self.running, name)]
        return 0 if self.priority[name] >= share * max(ahead) else others

    def alone(self, name: str) -> bool:
        """True when nothing else can run while ``name`` runs: it is the only one running and
        every stage still pending waits for it (directly or not). Its output may then go to the console."""
        if self.running != [name]:
            return False
        closure: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for other in self.pending:
                if other not in closure and current in edges(self.stages[other], self.stages):
                    closure.add(other)
                    frontier.append(other)
        return closure == set(self.pending)


@dataclass(frozen=True)
class Slot:
    name: str
    start: float
    end: float
    ran: bool = True


def simulate(stages: Sequence[Stage], jobs: int, durations: Mapping[str, float] | None = None) -> list[Slot]:
    """Run the scheduler on the estimates (or ``durations``); every stage passes. Returns when each ran."""
    scheduler = Scheduler(stages, jobs)
    length = {s.name: (durations or {}).get(s.name, s.estimate) for s in stages}
    clock = 0.0
    ends: dict[str, float] = {}
    slots: list[Slot] = []
    while not scheduler.done:
        started, skipped = scheduler.step()
        slots += [Slot(s.name, clock, clock, ran=False) for s, _reason in skipped]
        for stage in started:
            ends[stage.name] = clock + length[stage.name]
            slots.append(Slot(stage.name, clock, ends[stage.name]))
        if scheduler.running:
            clock = min(ends[n] for n in scheduler.running)
            for name in [n for n in scheduler.running if ends[n] <= clock]:
                scheduler.finish(name, True)
    return slots


def mermaid(stages: Iterable[Stage]) -> str:
    """The graph as a Mermaid flowchart: needs as arrows, after as dotted arrows, resources in the boxes."""
    stages = list(stages)
    plan = {s.name: s for s in stages}

    def node(name: str) -> str:
        return name.replace(":", "_").replace("-", "_")

    lines = ["flowchart LR"]
    for s in stages:
        uses = ", ".join(f"{r} {'excl.' if m == EXCLUSIVE else 'shared'}" for r, m in s.uses)
        label = s.name + (f"<br/><i>{uses}</i>" if uses else "")
        lines.append(f'  {node(s.name)}["{label}"]')
    for s in stages:
        lines += [f"  {node(d)} --> {node(s.name)}" for d in s.needs if d in plan]
        lines += [f"  {node(d)} -.-> {node(s.name)}" for d in s.after if d in plan]
    return "\n".join(lines)
