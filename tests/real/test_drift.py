"""A no-change rerun still sees drift and repairs it (stage real:drift, issue 17).

On the Podman demo target after site.yml's no-change second run (the real NanoClaw v2 has been
running since the first): four things drift at once, one per kind a rerun must catch - a config
file the podman role wrote, the stopped NanoClaw unit, a wrong owner on the root-owned docker
wrapper, the agent image gone from the service user's store. site.yml runs again as a scheduled
rerun does (tags compat and smoke skipped, like stage site:second-run): it reports changes and
every drift is gone. Stage ee then runs site.yml on this target once more and requires changed=0,
so nothing of the drift is left behind.
"""

from __future__ import annotations

from .conftest import EVIDENCE, HOME, USER, changed, hosts, sh, unit_state
from .conftest import playbook as run_playbook

TARGET = next(t for t, v in hosts().items() if v["nanoclaw_runtime"] == "podman")
CONF = f"{HOME}/.config/containers/containers.conf.d/50-nanoclaw.conf"
DRIFT_LINE = "# drift: a line nobody wrote through the collection"


def unit_and_image() -> tuple[str, str, str]:
    """The v2 unit, its wrapper and its agent image, as the unit file names them."""
    unit_path = sh(TARGET, f"ls {HOME}/.config/systemd/user/nanoclaw-v2-*.service").stdout.split()[0]
    text = sh(TARGET, f"cat {unit_path}").stdout
    env = dict(
        line.removeprefix('Environment="').rstrip('"').split("=", 1) for line in text.splitlines() if line.startswith('Environment="')
    )
    wrapper_dir = env["PATH"].split(":")[0]
    assert wrapper_dir.startswith("/usr/local/libexec/nanoclaw-provision/"), env["PATH"]
    return unit_path.rsplit("/", 1)[1], f"{wrapper_dir}/docker", "localhost/" + env["CONTAINER_IMAGE"]


def state(unit: str, wrapper: str, image: str) -> dict[str, str]:
    found = sh(TARGET, f"podman image inspect --format '{{{{.Id}}}}' {image}", user=USER, check=False)
    return {
        "conf": sh(TARGET, f"cat {CONF}").stdout,
        "unit": unit_state(TARGET, unit)["ActiveState"],
        "wrapper": sh(TARGET, f"stat -c '%U:%G %a' {wrapper}").stdout.strip(),
        "image": found.stdout.strip() if found.returncode == 0 else "",
    }


def test_a_rerun_repairs_a_config_file_a_stopped_unit_an_owner_and_a_missing_image():
    unit, wrapper, image = unit_and_image()
    before = state(unit, wrapper, image)
    assert before["unit"] == "active", before
    assert before["wrapper"] == "root:root 755", before
    assert before["image"], before
    assert DRIFT_LINE not in before["conf"]

    sh(TARGET, f"echo '{DRIFT_LINE}' >> {CONF}", user=USER)
    sh(TARGET, f"systemctl --user stop {unit}", user=USER)
    sh(TARGET, f"chown {USER}:{USER} {wrapper}")
    sh(TARGET, f"podman rmi -f {image}", user=USER)
    drifted = state(unit, wrapper, image)
    assert drifted["unit"] != "active", drifted
    assert drifted["wrapper"].startswith(f"{USER}:"), drifted
    assert not drifted["image"], drifted
    assert DRIFT_LINE in drifted["conf"]

    rc, out, seconds = run_playbook("site.yml", "real-drift-rerun.log", TARGET, "--skip-tags", "compat,smoke")
    assert rc == 0, out[-3000:]
    count = changed(out, TARGET)
    after = state(unit, wrapper, image)
    assert after["conf"] == before["conf"], "the podman role did not restore its containers.conf drop-in"
    assert after["unit"] == "active", "the stopped NanoClaw unit was not started again"
    assert after["wrapper"] == "root:root 755", f"the docker wrapper is still {after['wrapper']}"
    assert after["image"] == before["image"], "the agent image was not put back (same image id)"
    assert (count or 0) >= 4, f"four drifts, yet the rerun reported changed={count}"
    EVIDENCE.append(
        f"[{TARGET}] drift: {CONF} +1 line, {unit} stopped, {wrapper} chowned to {USER}, {image} removed;"
        f" the rerun (--skip-tags compat,smoke) took {seconds:.1f} s, changed={count}, and restored each"
        f" (unit {after['unit']}, wrapper {after['wrapper']}, image {after['image'][:12]})"
    )


def test_a_rerun_repairs_what_it_skips_when_in_place():
    """The tasks a rerun skips when their target is as they would make it (one read per role):
    a system directory's mode, a profile script's content, a CA file's content, the preflight
    fact, and the service user's manager stopped (its session bus socket file stays behind)."""
    uid = sh(TARGET, f"id -u {USER}").stdout.strip()
    drop_ins = "/etc/containers/registries.conf.d"
    profile = f"/etc/profile.d/nanoclaw-podman-{USER}.sh"
    cas = "/usr/local/share/ca-certificates/nanoclaw-provision"
    fact = "/etc/ansible/facts.d/nanoclaw_preflight.fact"
    ca = sh(TARGET, f"ls {cas}/*.crt").stdout.split()[0]

    def look() -> dict[str, str]:
        return {
            "mode": sh(TARGET, f"stat -c '%a' {drop_ins}").stdout.strip(),
            "profile": sh(TARGET, f"cat {profile}").stdout,
            "ca": sh(TARGET, f"cat {ca}").stdout,
            "fact": sh(TARGET, f"cat {fact}").stdout,
            "manager": sh(TARGET, f"systemctl is-active user@{uid}.service", check=False).stdout.strip(),
            "bus": sh(TARGET, f"test -S /run/user/{uid}/bus && echo socket || echo none").stdout.strip(),
        }

    before = look()
    assert before["mode"] == "755", before
    assert before["manager"] == "active", before
    sh(TARGET, f"chmod 0777 {drop_ins}; echo '{DRIFT_LINE}' >> {profile}; echo '{DRIFT_LINE}' >> {ca}; echo '{DRIFT_LINE}' >> {fact}")
    sh(TARGET, f"systemctl stop user@{uid}.service")
    drifted = look()
    assert drifted["mode"] == "777", drifted
    assert drifted["manager"] != "active", drifted
    assert all(DRIFT_LINE in drifted[k] for k in ("profile", "ca", "fact")), drifted
    # What makes the manager's check real: the file the skipped tasks would wait for is still there.
    assert drifted["bus"] == before["bus"] == "socket", drifted

    rc, out, seconds = run_playbook("site.yml", "real-drift-skipped-rerun.log", TARGET, "--skip-tags", "compat,smoke")
    assert rc == 0, out[-3000:]
    count = changed(out, TARGET)
    after = look()
    assert after["mode"] == "755", "the podman role did not restore the mode of its drop-in directory"
    assert after["profile"] == before["profile"], "the podman role did not restore its profile script"
    assert after["ca"] == before["ca"], "ca_trust did not restore its certificate"
    assert after["fact"] == before["fact"], "preflight did not restore its local fact"
    assert after["manager"] == "active", "the service user's systemd manager was not started again"
    assert unit_state(TARGET, unit_and_image()[0])["ActiveState"] == "active", "NanoClaw is not running again"
    assert (count or 0) >= 5, f"five drifts, yet the rerun reported changed={count}"
    EVIDENCE.append(
        f"[{TARGET}] drift of what reruns skip when in place: {drop_ins} 0777, {profile} +1 line, {ca} +1 line,"
        f" {fact} +1 line, user@{uid}.service stopped (bus socket left); the rerun took {seconds:.1f} s,"
        f" changed={count}, and restored each"
    )
