"""`./run`'s stage registry (tests/harness/cli.py): what `./run test` runs, and what may not overlap."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from tests.harness import cli, registry
from tests.harness.schedule import check_graph, mermaid, simulate

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def known():
    return cli.stage_registry()


@pytest.fixture(scope="module")
def test_plan(known):
    return [known[n] for n in cli.plan(["test"])]


def overlap(a, b) -> bool:
    return a.start < b.end and b.start < a.end


def test_every_edge_names_a_stage_and_the_graph_has_no_cycle(known) -> None:
    for stage in known.values():
        for dep in (*stage.needs, *stage.after):
            assert dep in known, f"{stage.name} waits for an unknown stage {dep!r}"
    check_graph(list(known.values()))


def test_the_test_plan_has_every_scenario_and_site_stage_and_no_benchmark(known) -> None:
    names = cli.plan(["test"])
    scenarios = {p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml") if not (p.parent / "MANUAL").exists()}
    assert {n.split(":", 1)[1] for n in names if n.startswith("molecule:")} == scenarios
    for stage in ("site:first-run", "real:checks", "site:second-run", "ee", "real:upgrade", "k8s:a", "k8s:b", "sanity", "unit"):
        assert stage in names
    assert "bench" not in names
    assert "bench:smoke" not in names


def test_explicit_stages_and_aliases(known) -> None:
    assert cli.plan(["lint", "unit"]) == ["lint", "unit"]
    assert cli.plan(["site"]) == ["setup", "host", "images", "site:first-run", "site:second-run"]
    assert [n for n in cli.plan(["molecule"]) if not n.startswith("molecule:")] == []
    with pytest.raises(SystemExit, match="unknown stage 'nope'"):
        cli.plan(["nope"])


def test_the_kubernetes_build_starts_with_the_run(test_plan) -> None:
    """It needs only Go and the module proxy, and it is on the longest path: first lane at 0."""
    slots = {s.name: s for s in simulate(test_plan, jobs=3)}
    assert slots["k8s:build"].start == 0
    assert slots["k8s:a"].start >= slots["k8s:build"].end
    assert slots["k8s:b"].start >= slots["k8s:a"].end


@pytest.mark.parametrize("jobs", [1, 2, 3, 5])
def test_stages_that_share_a_machine_resource_never_overlap(test_plan, jobs) -> None:
    slots = {s.name: s for s in simulate(test_plan, jobs=jobs)}
    # Each demo target's stages run one after the other, in this order; ee (the Podman target's)
    # and real:upgrade (the Docker target's) may overlap each other.
    for demo in (
        ["site:first-run", "real:checks", "site:second-run", "ee"],
        ["site:first-run", "real:checks", "site:second-run", "real:upgrade"],
    ):
        assert [slots[n].start for n in demo] == sorted(slots[n].start for n in demo)
        for a, b in itertools.pairwise(demo):
            assert slots[b].start >= slots[a].end
    # A dockerd with "bridge": "none" in this namespace deletes docker0 while the harness's dockerd uses it.
    for other in ("integration:fixtures", "integration:modules", "k8s:b"):
        assert not overlap(slots["molecule:agent_image_docker"], slots[other]), other
    assert not overlap(slots["k8s:a"], slots["k8s:b"])
    running = max(sum(1 for s in slots.values() if s.start <= t < s.end) for t in {s.start for s in slots.values()})
    assert running <= jobs


def test_each_agent_image_scenario_has_a_push_registry_of_its_own(known) -> None:
    """Their verify stops and restarts the push registry: never the one the demo targets use."""
    ports = {}
    for name in ("molecule:agent_image_podman", "molecule:agent_image_docker"):
        env = dict(known[name].env)
        ports[name] = int(env["NANOCLAW_REGISTRY_PORT"])
    assert len(set(ports.values())) == 2
    assert registry.PUSH_PORT not in ports.values()
    assert registry.MIRROR_PORT not in ports.values()


def test_testing_md_draws_the_current_stage_graph(test_plan) -> None:
    """docs/TESTING.md carries `./run --graph test`: regenerate it when the registry changes."""
    text = (REPO / "docs" / "TESTING.md").read_text()
    block = re.search(r"```mermaid\n(.*?)\n```", text, re.S)
    assert block, "docs/TESTING.md has no mermaid block"
    assert block.group(1) == mermaid(test_plan), "the stage graph in docs/TESTING.md is stale: paste `./run --graph test` into it"
