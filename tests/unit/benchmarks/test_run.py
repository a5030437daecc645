"""benchmarks/run.py: percentiles, the PLAY RECAP parser and the report's ratios (no engines needed)."""

from __future__ import annotations

from benchmarks import run as bench


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 21)]
    assert bench.pct(values, 50) == 10.0
    assert bench.pct(values, 95) == 19.0
    assert bench.pct(values, 100) == 20.0
    assert bench.pct([3.0], 95) == 3.0
    s = bench.summary([4.0, 1.0, 3.0, 2.0])
    assert (s["n"], s["p50"], s["min"], s["max"]) == (4, 2.5, 1.0, 4.0)


def test_recap_reads_every_counter_per_host() -> None:
    output = """
PLAY RECAP *********************************************************************
nanoclaw-bench-podman      : ok=14   changed=2    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0
localhost                  : ok=3    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
"""
    counts = bench.recap(output)
    assert counts["nanoclaw-bench-podman"]["changed"] == 2
    assert counts["nanoclaw-bench-podman"]["ok"] == 14
    assert counts["localhost"]["failed"] == 1


def _data() -> dict:
    machine = {
        "cpu": "test cpu",
        "cores": 2,
        "memory_gib": 8.0,
        "kernel": "6.1",
        "os": "Debian",
        "cgroup": "v2 (unified)",
        "docker": "20.10",
        "podman": "4.3.1",
        "runc": "runc 1.1",
        "ansible_core": "2.19",
        "python": "3.11",
        "commit": "abc123",
        "dirty": False,
        "site_yml": "abc site",
        "loadavg_start": [1.0, 1.0, 1.0],
    }
    floor = bench.summary([1.0, 1.0, 1.0])
    agent = bench.summary([2.0, 2.0, 2.0])
    total = bench.summary([3.0, 3.0, 3.0])
    return {
        "smoke": False,
        "runs": 3,
        "concurrent_rounds": 1,
        "date": "today",
        "seconds": 10.0,
        "loadavg_end": [1.0, 1.0, 1.0],
        "machine": machine,
        "cold": {
            "podman": {"title": "Podman", "floor": floor, "agent": agent, "total": total},
            "docker": {"title": "Docker", "unavailable": "no bridge | docker0"},
        },
        "concurrent": {
            "podman": {"title": "Podman", "one": agent, "five": total, "tput_one": 1.0, "tput_five": 4.0},
            "docker": {"title": "Docker", "unavailable": "no bridge"},
        },
        "kubernetes": "no Job engine",
        "agent_image": {"floor": 2.0, "first": {"wall": 10.0, "changed": 4}, "rerun": {"wall": 3.0, "changed": 0}},
        "site": {"podman": {"floor": 5.0, "first": {"wall": 20.0, "changed": 2, "rc": 0}, "rerun": {"wall": 10.0, "changed": 0, "rc": 0}}},
    }


def test_report_gives_ratios_against_the_floor_and_names_what_was_not_measured() -> None:
    text = bench.render(_data())
    assert "| Podman | 1.00 s | 1.00 s | 2.00 s | 2.00 s | 3.00 s | 3.00 s | 2.00x | 3.00x | 3.00x |" in text
    assert "not measured: this engine could not run a container in this run: `no bridge / docker0`" in text
    assert "| Kubernetes Job | not measured: no Job engine |" in text
    assert "| Podman | 2.00 s | 3.00 s | 3.00 s | 1.50x | 1.00/s | 4.00/s | 4.00x |" in text
    assert "| no-change rerun | 3.00 s | 0 | 1.50x |" in text
    assert "| podman | 5.00 s | 20.00 s | 2 | 10.00 s | 0 | 50.0% | 2.00x | **not met** |" in text
    assert "`abc123`" in text
    assert "SMOKE" not in text


def test_report_renders_the_kubernetes_job_row_with_its_floor_and_explains_it() -> None:
    data = _data()
    del data["kubernetes"]
    floor = bench.summary([2.0, 2.0, 4.0])
    data["cold"]["kubernetes"] = {
        "title": "Kubernetes Job (harness node: containerd 1.6, kubelet v1.33)",
        "floor": floor,
        "agent": bench.summary([3.0, 3.0, 3.0]),
        "total": bench.summary([5.0, 5.0, 6.0]),
    }
    data["concurrent"]["kubernetes"] = {
        "title": "Kubernetes Job (harness node: containerd 1.6, kubelet v1.33)",
        "one": bench.summary([3.0]),
        "five": bench.summary([6.0]),
        "tput_one": 0.2,
        "tput_five": 0.5,
    }
    text = bench.render(data)
    assert (
        "| Kubernetes Job (harness node: containerd 1.6, kubelet v1.33) | 2.00 s | 4.00 s | 3.00 s | 3.00 s "
        "| 5.00 s | 6.00 s | 1.50x | 2.50x | 1.50x |"
    ) in text
    assert (
        "| Kubernetes Job (harness node: containerd 1.6, kubelet v1.33) | 3.00 s | 6.00 s | 6.00 s | 2.00x | 0.20/s | 0.50/s | 2.50x |"
        in text
    )
    assert "`create_to_parsed`" in text
    assert "kubectl delete job --cascade=foreground --wait" in text
    assert "| Kubernetes Job | not measured" not in text


def test_report_says_why_kubernetes_and_a_site_runtime_were_not_measured() -> None:
    data = _data()
    del data["kubernetes"]
    reason = "the harness's cluster did not start: node not | Ready\nafter 120 s"
    data["cold"]["kubernetes"] = data["concurrent"]["kubernetes"] = {"title": "Kubernetes Job (harness node)", "not_measured": reason}
    data["site"]["docker"] = {"not_measured": "dockerd did not start"}
    data["site"]["podman"]["image"] = "localhost/nanoclaw-target:debian13"
    text = bench.render(data)
    assert "| Kubernetes Job (harness node) | not measured: the harness's cluster did not start: node not / Ready after 120 s |" in text
    assert "| Kubernetes Job (harness node) | not measured (see above) |" in text
    assert "| docker | not measured: dockerd did not start |" in text
    assert "`localhost/nanoclaw-target:debian13`" in text
    assert "in this machine's network" in text
    assert "with the FIXTURE NanoClaw repository and Node tarball" in text


def test_site_inventory_of_the_docker_row_keeps_the_machines_network_untouched() -> None:
    inventory = bench.site_inventory(bench.REPO / "inventories" / "demo", "nanoclaw-bench-docker", "docker")
    host = inventory["nanoclaw_hosts"]["hosts"]["nanoclaw-bench-docker"]
    assert host["nanoclaw_runtime"] == "docker"
    assert host["nanoclaw_docker_daemon_options"] == {"bridge": bench.DOCKER_BRIDGE, "iptables": False}
    assert host["nanoclaw_docker_registry_mirrors"] == ["https://{{ __demo_mirror }}"]
    assert str(bench.fixture_repo.META) in host["__demo_fixture"]
    assert host["nanoclaw_agent_image_registry_namespace"] == "bench/docker"
    # The demo Docker host's own variables come along (a compat check this machine cannot pass).
    assert host["nanoclaw_site_compat_not_required"] == ["build_file"]
    assert host["demo_generation"] == "v1"
    podman = bench.site_inventory(bench.REPO / "inventories" / "demo", "nanoclaw-bench-podman", "podman")["nanoclaw_hosts"]["hosts"]
    assert "nanoclaw_docker_daemon_options" not in podman["nanoclaw-bench-podman"]
    assert podman["nanoclaw-bench-podman"]["demo_generation"] == "v2"


PROFILED = """
PLAY [Provision NanoClaw hosts] ************************************************

TASK [Gathering Facts] *********************************************************
Wednesday 02 December 2026  21:34:00 +0000 (0:00:00.500)       0:00:01.000 ****
ok: [nanoclaw-bench-podman]

TASK [nanoclaw.provision.podman : Look up the NanoClaw user] *******************
Wednesday 02 December 2026  21:34:01 +0000 (0:00:01.250)       0:00:02.250 ****
ok: [nanoclaw-bench-podman]

TASK [nanoclaw.provision.podman : Install Podman] ******************************
Wednesday 02 December 2026  21:34:01 +0000 (0:00:00.300)       0:00:02.550 ****
skipping: [nanoclaw-bench-podman]

TASK [nanoclaw.provision.podman : Configure registries] ************************
Wednesday 02 December 2026  21:34:01 +0000 (0:00:00.020)       0:00:02.570 ****
skipping: [nanoclaw-bench-podman] => (item=a)
ok: [nanoclaw-bench-podman] => (item=b)

RUNNING HANDLER [nanoclaw.provision.nanoclaw : Restart NanoClaw] ***************
Wednesday 02 December 2026  21:34:02 +0000 (0:00:00.400)       0:00:02.970 ****
changed: [nanoclaw-bench-podman]

PLAY RECAP *********************************************************************
nanoclaw-bench-podman      : ok=4    changed=1    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0

TASKS RECAP ********************************************************************
Wednesday 02 December 2026  21:34:03 +0000 (0:00:00.750)       0:00:03.720 ****
"""


def test_role_stats_counts_tasks_per_role_and_times_each_from_the_next_header() -> None:
    stats = bench.role_stats(PROFILED, "nanoclaw-bench-podman")
    assert stats["(play)"] == {"ran": 1, "skipped": 0, "seconds": 1.25}
    # A loop with one item run counts as run; each task's time is the clock under the next header.
    assert stats["nanoclaw.provision.podman"] == {"ran": 2, "skipped": 1, "seconds": 0.72}
    # The last task's time comes from TASKS RECAP.
    assert stats["nanoclaw.provision.nanoclaw"] == {"ran": 1, "skipped": 0, "seconds": 0.75}
    assert bench.role_stats(PROFILED, "another-host")["(play)"] == {"ran": 0, "skipped": 0, "seconds": 1.25}


def _site_row(first: float, rerun: float, **runs: dict) -> dict:
    roles = {"nanoclaw.provision.podman": {"ran": 30, "skipped": 10, "seconds": 8.0}}
    return {
        "floor": 2.0,
        "floor_podman": 4.0,
        "first": {"wall": first, "changed": 40, "rc": 0},
        "rerun": {"wall": rerun, "changed": 0, "rc": 0},
        "runs": {"rerun": {"wall": rerun, "changed": 0, "rc": 0, "roles": roles}, **runs},
    }


def test_the_site_rows_say_whether_the_rerun_goal_is_met() -> None:
    data = _data()
    data["site"] = {"podman": _site_row(200.0, 20.0), "docker": _site_row(200.0, 40.0)}
    text = bench.render(data)
    assert "| podman | 2.00 s | 200.00 s | 40 | 20.00 s | 0 | 10.0% | 10.00x | met |" in text
    # 20 % of the first converge and over 30 s: not met.
    assert "| docker | 2.00 s | 200.00 s | 40 | 40.00 s | 0 | 20.0% | 20.00x | **not met** |" in text
    assert "over SSH with pipelining" in text


BEFORE = {"ran": 34, "skipped": 8, "seconds": 9.0}


def test_the_other_ways_and_the_tasks_per_role_are_side_by_side_with_the_baseline() -> None:
    data = _data()
    runs = {
        "check": {"wall": 22.0, "changed": 0, "rc": 0},
        "mitogen": {"wall": 10.0, "changed": 0, "rc": 0},
        "podman": {"wall": 40.0, "changed": 0, "rc": 0},
        "baseline": {"wall": 40.0, "changed": 0, "rc": 0, "roles": {"nanoclaw.provision.podman": BEFORE}},
    }
    row = _site_row(200.0, 20.0, **runs)
    row["baseline"] = {"ref": "ff30545", "commit": "ff30545aaaaaaaaa"}
    data["site"] = {"podman": row}
    text = bench.render(data)
    assert (
        "| podman | 20.00 s | 22.00 s, changed=0 | 1.10x | 10.00 s, changed=0 | 0.50x | 40.00 s (4.00 s) | 10.00x "
        "| 40.00 s, changed=0 | 0.50x |"
    ) in text
    assert "`--baseline ff30545`" in text
    assert "| podman | 30 | 10 | 8.0 | 34 | 8 | 9.0 |" in text
    assert "| **all** | 30 | 10 | 8.0 | 34 | 8 | 9.0 |" in text


def test_a_partial_run_keeps_the_sections_it_did_not_measure_from_the_previous_report() -> None:
    old = bench.render(_data())
    data = _data()
    data["agent_image"] = None
    data["cold"], data["concurrent"] = {}, {}
    data["site"] = {"podman": _site_row(300.0, 30.0)}
    text = bench.keep_sections(bench.render(data), old, {"site"})
    assert "| 30.00 s | 0 | 10.0% |" in text
    # The engines' and the agent_image role's sections come from the old report, marked as kept.
    assert "| Podman | 1.00 s | 1.00 s | 2.00 s | 2.00 s | 3.00 s | 3.00 s | 2.00x | 3.00x | 3.00x |" in text
    assert "| no-change rerun | 3.00 s | 0 | 1.50x |" in text
    assert text.count("*Kept from the previous report (commit `abc123`") == 3
    # Kept again by a later partial run: still one note, naming the run that measured it.
    again = bench.keep_sections(bench.render(data).replace("`abc123`", "`def456`"), text, {"site"})
    assert again.count("*Kept from the previous report (commit `abc123`") == 3
    assert "*Kept from the previous report (commit `def456`" not in again
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h.split(" (")[0] for h in headings] == [
        "## Machine",
        "## Agent cold start",
        "## 5 concurrent agents vs one",
        "## agent_image role when nothing changed",
        "## site.yml: first converge vs idempotent rerun",
        "## Reproduce",
    ]


def test_the_site_inventory_reaches_the_target_over_ssh_or_podman() -> None:
    source = bench.REPO / "inventories" / "demo"
    ssh = bench.site_inventory(source, "t", "podman", {"port": 22041, "key": "/k"})["nanoclaw_hosts"]["hosts"]["t"]
    assert (ssh["ansible_connection"], ssh["ansible_host"], ssh["ansible_port"], ssh["ansible_user"]) == ("ssh", "127.0.0.1", 22041, "root")
    assert ssh["ansible_ssh_private_key_file"] == "/k"
    podman = bench.site_inventory(source, "t", "podman")["nanoclaw_hosts"]["hosts"]["t"]
    assert podman["ansible_connection"] == "containers.podman.podman"
    assert "ansible_port" not in podman


def test_a_run_of_the_cluster_only_keeps_the_engines_rows_of_the_tables_they_share() -> None:
    old = bench.render(_data())
    data = _data()
    podman_rows = [line for line in old.splitlines() if line.startswith("| Podman |") and line.count("|") > 4]
    assert len(podman_rows) == 2, "the fixture has a Podman row in both shared tables (and one in the machine's)"
    data["cold"] = {"kubernetes": {**data["cold"]["podman"], "title": "Kubernetes Job (harness node)"}}
    data["concurrent"] = {"kubernetes": {**data["concurrent"]["podman"], "title": "Kubernetes Job (harness node)"}}
    text = bench.keep_sections(bench.render(data).replace("`abc123`", "`def456`"), old, {"kubernetes"})
    kept = [line for line in text.splitlines() if line.startswith("| Podman *(kept from `abc123`")]
    assert len(kept) == 2
    assert [line.split("|")[2:] for line in kept] == [line.split("|")[2:] for line in podman_rows]
    assert text.count("| Kubernetes Job (harness node) |") == 2
    assert "*Kept from the previous report" not in text.split("## agent_image")[0]
    # Kept again by the next such run: marked once, still naming the run that measured it.
    again = bench.keep_sections(bench.render(data).replace("`abc123`", "`0123abc`"), text, {"kubernetes"})
    assert again.count("| Podman *(kept from `abc123`") == 2
    assert "*(kept from `def456`" not in again


def test_rows_a_previous_partial_run_had_kept_name_the_run_that_measured_them() -> None:
    measured = bench.render(_data())
    data = _data()
    data["agent_image"], data["cold"], data["concurrent"] = None, {}, {}
    data["site"] = {"podman": _site_row(300.0, 30.0)}
    site_only = bench.keep_sections(bench.render(data).replace("`abc123`", "`def456`"), measured, {"site"})
    data = _data()
    data["cold"] = {"kubernetes": {**data["cold"]["podman"], "title": "Kubernetes Job (harness node)"}}
    data["concurrent"] = {"kubernetes": {**data["concurrent"]["podman"], "title": "Kubernetes Job (harness node)"}}
    text = bench.keep_sections(bench.render(data).replace("`abc123`", "`0123abc`"), site_only, {"kubernetes"})
    assert text.count("| Podman *(kept from `abc123`") == 2
    assert "kept from `def456`" not in text
