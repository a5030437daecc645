"""A credential in nanoclaw_repo_url stays out of argv, task output, .git/config and image labels (issue 16.7).

Real parts: git's own smart-HTTP server (`git http-backend`) behind HTTP basic auth on 127.0.0.1,
the module the nanoclaw role checks out with (nanoclaw.provision.nanoclaw_checkout, called as
roles/nanoclaw/tasks/source.yml calls it) and the agent_image role's checkout tasks, run by
ansible-playbook -vvv against this machine into temporary directories, and a `git` first on PATH
that records every argv git is started with.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.unit.roles.playbook import flat, run_playbook

USER, SECRET = "ci-bot", "s3cr3t-TOKEN-9f2c"
GIT = shutil.which("git") or "/usr/bin/git"


class GitHTTP(BaseHTTPRequestHandler):
    """git http-backend (CGI) for /<repo>.git/..., only with the right basic credentials."""

    root = Path()

    def log_message(self, *args):
        pass

    def _serve(self):
        expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _sep, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_USER": USER,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        proc = subprocess.run([GIT, "http-backend"], input=body, capture_output=True, env=env, check=False)
        head, _sep, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            key, _sep, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run([GIT, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A NanoClaw-shaped FIXTURE repository (package.json, container/Dockerfile) served with basic auth."""
    base = tmp_path_factory.mktemp("git")
    work = base / "work"
    (work / "container").mkdir(parents=True)
    (work / "package.json").write_text(json.dumps({"name": "nanoclaw", "version": "2.0.0"}))
    (work / "container" / "Dockerfile").write_text("FROM scratch\n")
    _git("init", "-q", "-b", "main", str(work))
    _git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fixture", cwd=work)
    commit = _git("rev-parse", "HEAD", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(base / "srv" / "nanoclaw.git"))
    GitHTTP.root = base / "srv"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), GitHTTP)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}/nanoclaw.git", "commit": commit}
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def shim(tmp_path):
    """`git` first on PATH, recording each argv (NUL-separated, one line per call) before running git."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "git-argv.log"
    (bindir / "git").write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" >> {log}\necho >> {log}\nexec {GIT} "$@"\n')
    (bindir / "git").chmod(0o755)
    return bindir, log


def _play(tmp_path: Path, tasks: str, path: Path) -> Path:
    play = tmp_path / "play.yml"
    play.write_text(
        "---\n- name: Role tasks with a credential in the repository URL\n  hosts: all\n  gather_facts: false\n"
        f"  environment:\n    PATH: {path}:/usr/local/bin:/usr/bin:/bin\n  tasks:\n{tasks}"
    )
    return play


CHECKOUT = """    - name: Check out the pinned commit (as roles/nanoclaw/tasks/source.yml does)
      nanoclaw.provision.nanoclaw_checkout:
        dest: "{{ checkout_dir }}"
        repo_url: "{{ nanoclaw_repo_url }}"
        version: "{{ nanoclaw_version }}"
        runtime_paths: [groups, data, store, logs, .env]
"""


def _vars(tmp_path: Path, server: dict, url: str) -> dict:
    return {"nanoclaw_repo_url": url, "nanoclaw_version": server["commit"], "checkout_dir": str(tmp_path / "nanoclaw")}


def test_the_server_really_wants_the_credential(tmp_path, server, shim):
    """Control: without the credential the repository cannot be reached."""
    bindir, _log = shim
    result = run_playbook(_play(tmp_path, CHECKOUT, bindir), _vars(tmp_path, server, server["url"]))
    assert result.returncode != 0
    assert "cannot reach" in flat(result.stdout + result.stderr)


def test_checkout_keeps_the_credential_out_of_argv_output_git_config_and_the_image_label(tmp_path, server, shim):
    bindir, log = shim
    url = server["url"].replace("http://", f"http://{USER}:{SECRET}@")
    checkout = tmp_path / "nanoclaw"
    tasks = (
        CHECKOUT + "    - name: Read what the agent image would be labelled with\n      ansible.builtin.include_role:\n"
        "        name: nanoclaw.provision.agent_image\n        tasks_from: checkout.yml\n"
        "    - name: Show the label\n      ansible.builtin.debug:\n"
        "        msg: \"source={{ __nanoclaw_agent_image_labels['org.opencontainers.image.source'] }}\"\n"
    )
    variables = {**_vars(tmp_path, server, url), "nanoclaw_agent_image_project_dir": str(checkout)}
    result = run_playbook(_play(tmp_path, tasks, bindir), variables, verbosity=3)
    out = result.stdout + result.stderr
    assert result.returncode == 0, flat(out)[-4000:]
    assert _git("rev-parse", "HEAD", cwd=checkout) == server["commit"]
    assert any("fetch" in call or "clone" in call for call in log.read_text().split("\n")), "git never reached the repository"
    assert SECRET not in log.read_text(), "the credential was on git's command line"
    assert SECRET not in (checkout / ".git" / "config").read_text(), "the credential is in .git/config"
    assert _git("config", "--get", "remote.origin.url", cwd=checkout) == server["url"]
    assert f"source={server['url']}" in out
    assert SECRET not in out, "the credential is in the -vvv output"


def test_an_image_label_never_carries_a_credential_of_an_older_checkout(tmp_path, server):
    """A checkout an earlier version made still has the credential in its remote: the label drops it."""
    checkout = tmp_path / "old-checkout"
    url = server["url"].replace("http://", f"http://{USER}:{SECRET}@")
    _git("clone", "-q", url, str(checkout))
    tasks = (
        "    - name: Read what the agent image would be labelled with\n      ansible.builtin.include_role:\n"
        "        name: nanoclaw.provision.agent_image\n        tasks_from: checkout.yml\n"
        "    - name: Show the label\n      ansible.builtin.debug:\n"
        "        msg: \"source={{ __nanoclaw_agent_image_labels['org.opencontainers.image.source'] }}\"\n"
    )
    play = tmp_path / "play.yml"
    play.write_text(
        "---\n- name: Agent image checkout\n  hosts: all\n  gather_facts: false\n  tasks:\n" + tasks,
    )
    result = run_playbook(play, {"nanoclaw_agent_image_project_dir": str(checkout)}, verbosity=3)
    out = result.stdout + result.stderr
    assert result.returncode == 0, flat(out)[-4000:]
    assert f"source={server['url']}" in out
    assert SECRET not in out
