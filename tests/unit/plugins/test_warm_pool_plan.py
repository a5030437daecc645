"""The kubernetes role's warm pool plan: what goes, what is started."""

from __future__ import annotations

from ansible_collections.nanoclaw.provision.plugins.filter.warm_pool_plan import warm_pool_plan


def _job(name: str, group: str, created: str = "2026-12-03T08:00:00Z", condition: str | None = None, **labels: str) -> dict:
    job = {"metadata": {"name": name, "creationTimestamp": created, "labels": {"nanoclaw.dev/warm": group, **labels}}, "status": {}}
    if condition:
        job["status"]["conditions"] = [{"type": condition, "status": "True"}]
    return job


def test_an_empty_pool_is_filled_for_every_group():
    assert warm_pool_plan([], ["main", "family"], 2) == {"remove": [], "create": ["main", "main", "family", "family"]}


def test_a_full_pool_is_left_alone():
    jobs = [_job("a", "main"), _job("b", "main")]
    assert warm_pool_plan(jobs, ["main"], 2) == {"remove": [], "create": []}


def test_finished_jobs_go_and_are_replaced():
    jobs = [_job("a", "main", condition="Failed"), _job("b", "main", condition="Complete"), _job("c", "main")]
    assert warm_pool_plan(jobs, ["main"], 2) == {"remove": ["a", "b"], "create": ["main"]}


def test_the_youngest_beyond_the_size_go_and_other_groups_pools_too():
    jobs = [
        _job("old", "main", "2026-12-03T08:00:00Z"),
        _job("young", "main", "2026-12-03T09:00:00Z"),
        _job("gone-group", "removed-group"),
    ]
    assert warm_pool_plan(jobs, ["main"], 1) == {"remove": ["gone-group", "young"], "create": []}
    assert warm_pool_plan(jobs, ["main"], 0)["remove"] == ["gone-group", "old", "young"]


def test_claimed_and_deleting_jobs_are_a_sessions_not_the_pools():
    claimed = _job("busy", "main", **{"nanoclaw.dev/claimed": "abc"})
    deleting = _job("leaving", "main")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T09:00:00Z"
    assert warm_pool_plan([claimed, deleting], ["main"], 1) == {"remove": [], "create": ["main"]}
