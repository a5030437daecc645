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
