"""Role ca_trust: a CA file that is missing or holds no certificate fails before the target is
touched, naming the variable; a valid one is installed (check mode here: nothing on this machine
changes). Runs the real role with ansible-playbook against this machine, connection local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CA_DIR = Path("/usr/local/share/ca-certificates/nanoclaw-provision")
PLAY = """
- name: Trust private CAs
  hosts: all
  gather_facts: false
  roles:
    - role: nanoclaw.provision.ca_trust
"""


def run(tmp_path: Path, certificates: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)]
    argv += ["-e", f"ansible_python_interpreter={sys.executable}", "-e", json.dumps({"nanoclaw_ca_certificates": certificates})]
    if check:
        argv.append("--check")
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)


def listing() -> list[str]:
    return sorted(os.listdir(CA_DIR)) if CA_DIR.exists() else []


def test_missing_file_fails_naming_the_variable(tmp_path):
    before = listing()
    result = run(tmp_path, [str(tmp_path / "nope.crt")], check=False)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"nanoclaw_ca_certificates: no such file on the controller: {tmp_path / 'nope.crt'}" in out
    assert listing() == before


def test_file_without_a_certificate_fails_naming_the_variable(tmp_path):
    bogus = tmp_path / "proxy.crt"
    bogus.write_text("not a certificate\n")
    result = run(tmp_path, [str(bogus)], check=False)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"nanoclaw_ca_certificates: {bogus} holds no PEM certificate" in out


def test_a_certificate_would_be_installed_and_check_mode_changes_nothing(tmp_path):
    key, cert = tmp_path / "ca.key", tmp_path / "corp-proxy.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test proxy CA",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    before = listing()
    result = run(tmp_path, [str(cert)])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "corp-proxy.crt" in out
    assert "changed=" in out
    assert listing() == before
