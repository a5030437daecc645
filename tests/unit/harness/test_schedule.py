"""The stage scheduler of `./run` (tests/harness/schedule.py): edges, resources, lanes, order."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.harness.schedule import EXCLUSIVE, SHARED, PlanError, Scheduler, Stage, check_graph, mermaid, priorities, simulate


def by_name(slots):
    return {s.name: s for s in slots}


def overlap(a, b) -> bool:
    return a.start < b.end and b.start < a.end


def test_a_stage_starts_after_what_it_needs() -> None:
    slots = by_name(simulate([Stage("b", needs=("a",), estimate=5), Stage("a", estimate=10)], jobs=4))
    assert slots["a"].start == 0
    assert slots["b"].start == slots["a"].end == 10


def test_a_need_outside_the_plan_is_ignored() -> None:
    slots = by_name(simulate([Stage("unit", needs=("setup",), estimate=5)], jobs=1))
    assert slots["unit"].start == 0


def test_a_failed_need_skips_the_stage_and_what_needs_it_but_not_what_only_comes_after() -> None:
    scheduler = Scheduler(
        [
            Stage("a"),
            Stage("b", needs=("a",)),
            Stage("c", needs=("b",)),
            Stage("d", after=("a",)),
        ],
        jobs=4,
    )
    started, skipped = scheduler.step()
    assert [s.name for s in started] == ["a"]
    assert skipped == []
    scheduler.finish("a", passed=False)
    started, skipped = scheduler.step()
    assert [s.name for s in started] == ["d"]
    assert [(s.name, reason) for s, reason in skipped] == [("b", "not run: needs a, which failed"), ("c", "not run: needs b, which failed")]
    scheduler.finish("d", passed=True)
    assert scheduler.done
    assert scheduler.outcome == {"a": False, "b": False, "c": False, "d": True}


def test_never_more_than_jobs_at_once() -> None:
    stages = [Stage(f"s{i}", estimate=10 + i) for i in range(7)]
    slots = simulate(stages, jobs=3)
    for t in {s.start for s in slots}:
        assert sum(1 for s in slots if s.start <= t < s.end) <= 3
    # longest first: s6 s5 s4 start at 0; s3 at 14, s2 at 15, s1 at 16 (all end at 27); s0 at 27
    assert max(s.end for s in slots) == pytest.approx(37)


def test_an_exclusive_holder_runs_alone_on_its_resource_and_shared_holders_overlap() -> None:
    rng = random.Random(7)
    stages = [
        Stage("registry-restart", uses=(("push", EXCLUSIVE),), estimate=30),
        *(Stage(f"pull{i}", uses=(("push", SHARED),), estimate=rng.randint(5, 40)) for i in range(4)),
        Stage("other", estimate=50),
    ]
    slots = by_name(simulate(stages, jobs=6))
    pulls = [slots[f"pull{i}"] for i in range(4)]
    assert all(not overlap(slots["registry-restart"], p) for p in pulls)
    assert any(overlap(a, b) for a, b in itertools.combinations(pulls, 2))
    assert overlap(slots["other"], slots["registry-restart"]) or overlap(slots["other"], pulls[0])


def test_two_exclusive_holders_never_overlap() -> None:
    stages = [Stage(f"k8s:{x}", uses=(("cluster", EXCLUSIVE),), estimate=10) for x in "ab"]
    slots = by_name(simulate(stages, jobs=2))
    assert not overlap(slots["k8s:a"], slots["k8s:b"])


def test_a_stage_blocked_on_a_resource_does_not_hold_back_the_others() -> None:
    stages = [
        Stage("long", uses=(("r", EXCLUSIVE),), estimate=100),
        Stage("wants-r", uses=(("r", SHARED),), estimate=90),
        Stage("free", estimate=10),
    ]
    slots = by_name(simulate(stages, jobs=2))
    assert slots["free"].start == 0
    assert slots["wants-r"].start == 100


def test_the_longest_path_to_the_end_starts_first() -> None:
    stages = [
        Stage("short", estimate=50),
        Stage("build", estimate=20),
        Stage("tests", needs=("build",), estimate=40),
    ]
    assert priorities(stages) == {"short": 50, "build": 60, "tests": 40}
    started, _skipped = Scheduler(stages, jobs=1).step()
    assert [s.name for s in started] == ["build"]


def test_equal_priorities_keep_the_plan_order() -> None:
    started, _skipped = Scheduler([Stage("lint", estimate=5), Stage("unit", estimate=5)], jobs=1).step()
    assert [s.name for s in started] == ["lint"]


def test_cycles_and_duplicates_are_refused() -> None:
    with pytest.raises(PlanError, match="cycle: a -> b -> a"):
        check_graph([Stage("a", needs=("b",)), Stage("b", after=("a",))])
    with pytest.raises(PlanError, match="named twice: a"):
        check_graph([Stage("a"), Stage("a")])
    with pytest.raises(ValueError, match="shared' or 'exclusive'"):
        Stage("x", uses=(("r", "sometimes"),))


def test_a_stage_runs_alone_only_when_everything_pending_waits_for_it() -> None:
    chain = Scheduler([Stage("setup"), Stage("host", needs=("setup",)), Stage("images", after=("host",))], jobs=3)
    started, _skipped = chain.step()
    assert [s.name for s in started] == ["setup"]
    assert chain.alone("setup")
    fork = Scheduler([Stage("setup"), Stage("k8s:build"), Stage("host", needs=("setup",))], jobs=1)
    started, _skipped = fork.step()
    assert not fork.alone(started[0].name)  # the other root could start once a lane is free


def test_mermaid_draws_needs_after_and_resources() -> None:
    text = mermaid([Stage("a"), Stage("b:x", needs=("a",), after=("c",), uses=(("r", EXCLUSIVE),)), Stage("c")])
    assert 'b_x["b:x<br/><i>r excl.</i>"]' in text
    assert "  a --> b_x" in text
    assert "  c -.-> b_x" in text


def test_stages_off_the_longest_paths_start_niced_and_the_chain_ahead_does_not():
    stages = [
        Stage("setup", estimate=10),
        Stage("lint", needs=("setup",), estimate=5),
        Stage("images", needs=("setup",), estimate=100),
        Stage("site", needs=("images",), estimate=400),
        Stage("k8s", estimate=450),
    ]
    scheduler = Scheduler(stages, jobs=4)
    assert scheduler.niceness("setup", 10) == 0  # 510 ahead of it: the longest path
    assert scheduler.niceness("k8s", 10) == 0  # 450 >= half of 510
    assert scheduler.niceness("lint", 10) == 10  # 5
    assert scheduler.niceness("lint", 0) == 0  # NANOCLAW_NICE=0: all alike
    # Once the long chains are done, what is left is the longest path ahead and runs at full priority.
    for name in ("setup", "k8s", "images", "site"):
        scheduler.pending.remove(name)
    assert scheduler.niceness("lint", 10) == 0
