"""A pin bump of the real NanoClaw, v1.2.53 -> v2.0.64, on the Docker demo target (stage real:upgrade).

Before: the data a v1 host and its agents write - memory in the TRACKED groups/main/CLAUDE.md
(v1 agents write there: the group folder is mounted read-write at /workspace/group), a new
group, databases, store, logs, an operator's .env key. playbooks/upgrade.yml moves the host to
the v2 pin; everything survives byte for byte, apart from what NanoClaw v2 itself changes at
its first start (src/claude-md-compose.ts: groups/main/CLAUDE.md -> CLAUDE.local.md, groups/global/
removed). Then site.yml again, after v2 ran: changed=0.
"""

from __future__ import annotations

from ansible_collections.nanoclaw.provision.plugins.module_utils._upstream import conventions

from .conftest import EVIDENCE, ROOT, USER, changed, hosts, sh, unit_state
from .conftest import playbook as run_playbook

TARGET = next(t for t, v in hosts().items() if v["nanoclaw_runtime"] == "docker")
MEMORY = "# Main\\nThe user prefers tea. Remember the milk.\\n"
DATA = [
    "groups/family/notes.txt",
    "data/messages.db",
    "data/sessions/abc/session.json",
    "store/auth/creds.json",
    "logs/operator.log",
    ".env",
]


def playbook(name: str, log_name: str) -> tuple[int, str, float]:
    return run_playbook(name, log_name, TARGET, "-e", "demo_generation=v2")


def digests() -> str:
    files = " ".join(DATA)
    return sh(TARGET, f"cd {ROOT} && sha256sum {files} && stat -c '%n %s %Y %a' {files}").stdout


def test_v1_to_v2_keeps_the_data_and_the_rerun_after_v2_ran_changes_nothing(upstream):
    assert sh(TARGET, f"git -C {ROOT} rev-parse HEAD", user=USER).stdout.strip() == upstream["v1"]
    sh(
        TARGET,
        f"cd {ROOT} && printf '{MEMORY}' > groups/main/CLAUDE.md && mkdir -p groups/family data/sessions/abc store/auth && "
        "echo family > groups/family/notes.txt && head -c 65536 /dev/urandom > data/messages.db && "
        "echo '{\"s\":1}' > data/sessions/abc/session.json && echo '{\"creds\":true}' > store/auth/creds.json && "
        "echo operator > logs/operator.log && printf '# operator note\\nCUSTOM_KEY=\"keep me\"\\n' >> .env",
        user=USER,
    )
    memory = sh(TARGET, f"sha256sum < {ROOT}/groups/main/CLAUDE.md").stdout.split()[0]
    status = sh(TARGET, f"git -C {ROOT} status --porcelain --untracked-files=no", user=USER).stdout.strip()
    assert status == "M groups/main/CLAUDE.md"  # agent memory in a tracked file: the checkout is "dirty"
    before = digests()

    rc, out, seconds = playbook("upgrade.yml", "real-upgrade.log")
    assert rc == 0, out[-6000:]
    EVIDENCE.append(f"upgrade.yml v1 -> v2 on {TARGET}: {seconds:.1f} s")
    assert sh(TARGET, f"git -C {ROOT} rev-parse HEAD", user=USER).stdout.strip() == upstream["v2"]
    after = digests()
    EVIDENCE.append(f"data before the bump:\n{before}\nafter:\n{after}")
    assert after == before

    # v2 started (the role waited until it stayed up) and migrated the v1 memory itself.
    root = sh(TARGET, f"realpath {ROOT}").stdout.strip()
    unit = conventions("v2", root, physical=True)["unit"]
    state = unit_state(TARGET, unit)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    local = sh(TARGET, f"sha256sum < {ROOT}/groups/main/CLAUDE.local.md").stdout.split()[0]
    assert local == memory
    assert sh(TARGET, f"test ! -e {ROOT}/groups/main/CLAUDE.md && test ! -e {ROOT}/groups/global", check=False).returncode == 0
    # The v1 unit of this install is gone; nothing else named nanoclaw runs.
    assert sh(TARGET, f"test ! -e ~{USER}/.config/systemd/user/nanoclaw.service", check=False).returncode == 0
    assert unit_state(TARGET, "nanoclaw.service")["LoadState"] == "not-found"
    EVIDENCE.append(f"{unit} after the bump: {state}; v1 memory now in groups/main/CLAUDE.local.md (sha256 {local[:16]}...)")

    rc, out, seconds = playbook("site.yml", "real-upgrade-rerun.log")
    assert rc == 0, out[-6000:]
    count = changed(out, TARGET)
    EVIDENCE.append(f"site.yml after v2 ran on {TARGET}: {seconds:.1f} s, changed={count}")
    assert count == 0, out[-6000:]
    assert digests() == before
