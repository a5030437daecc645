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
    podman = bench.site_inventory(bench.REPO / "inventories" / "demo", "nanoclaw-bench-podman", "podman")["nanoclaw_hosts"]["hosts"]
    assert "nanoclaw_docker_daemon_options" not in podman["nanoclaw-bench-podman"]
