"""subid_plan: the parsing and range arithmetic behind the podman role's id allocation."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.nanoclaw.provision.plugins.filter.subid import parse_subid, subid_plan

FILE = "alice:100000:65536\nbob:165536:65536\n"


def test_existing_range_is_kept():
    plan = subid_plan(FILE, "bob")
    assert plan["action"] == "keep"
    assert (plan["start"], plan["count"]) == (165536, 65536)
    assert plan["problems"] == []


def test_missing_range_is_allocated_after_the_highest_one():
    plan = subid_plan(FILE, "nanoclaw")
    assert plan["action"] == "add"
    assert plan["line"] == "nanoclaw:231072:65536"
    assert plan["problems"] == []


def test_empty_file_starts_at_the_minimum():
    assert subid_plan("", "nanoclaw")["line"] == "nanoclaw:100000:65536"


def test_entry_by_numeric_uid_counts_as_the_users():
    plan = subid_plan("1000:300000:65536\n", "nanoclaw", uid="1000")
    assert plan["action"] == "keep"
    assert plan["start"] == 300000


def test_requested_start_overlapping_another_user_names_the_variable():
    plan = subid_plan(FILE, "nanoclaw", start=120000, start_var="nanoclaw_podman_subuid_start")
    assert plan["action"] == "add"
    assert len(plan["problems"]) == 1
    assert "nanoclaw_podman_subuid_start=120000" in plan["problems"][0]
    assert "alice (100000-165535)" in plan["problems"][0]


def test_adjacent_ranges_do_not_overlap():
    assert subid_plan(FILE, "nanoclaw", start=231072)["problems"] == []
    assert subid_plan(FILE, "nanoclaw", start=231071)["problems"] != []


def test_too_small_existing_range_is_a_problem():
    plan = subid_plan("nanoclaw:100000:1000\n", "nanoclaw", count_var="nanoclaw_podman_subid_count")
    assert "nanoclaw_podman_subid_count asks for 65536" in plan["problems"][0]


def test_existing_overlap_between_users_is_reported():
    plan = subid_plan("alice:100000:65536\nnanoclaw:150000:65536\n", "nanoclaw")
    assert plan["action"] == "keep"
    assert "overlaps alice" in plan["problems"][0]


def test_verify_mode_reports_a_missing_range():
    plan = subid_plan(FILE, "nanoclaw", allocate=False, kind="subgid")
    assert plan["action"] == "missing"
    assert "no subgid range in /etc/subgid" in plan["problems"][0]


def test_changing_an_existing_range_needs_replace():
    refused = subid_plan(FILE, "bob", start=500000, start_var="nanoclaw_podman_subuid_start")
    assert refused["action"] == "keep"
    assert "unset nanoclaw_podman_subuid_start" in refused["problems"][0]
    replaced = subid_plan(FILE, "bob", start=500000, replace=True)
    assert replaced["action"] == "replace"
    assert replaced["line"] == "bob:500000:65536"
    assert replaced["problems"] == []


def test_malformed_line_is_an_error():
    with pytest.raises(AnsibleFilterError, match="line 2"):
        parse_subid("alice:100000:65536\nbroken line\n")


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**5)), max_size=8), st.integers(1, 10**5))
def test_allocated_range_never_overlaps(ranges, count):
    content = "".join(f"u{i}:{s}:{c}\n" for i, (s, c) in enumerate(ranges))
    plan = subid_plan(content, "nanoclaw", count=count)
    assert plan["start"] >= 100000
    for s, c in ranges:
        assert plan["start"] >= s + c or plan["start"] + count <= s
    assert plan["problems"] == []
