"""The nanoclaw role's docker wrapper (templates/docker-wrapper.sh.j2): argv handling only.

The template is rendered with Jinja as Ansible renders it and run by /bin/sh against a fake
"real docker" that records the argv it gets (one NUL-terminated argument each), so this tests
the wrapper's parsing, not an engine: the molecule scenarios nanoclaw_docker and
nanoclaw_podman run the same wrapper against real engines (molecule/nanoclaw_common/tests).
The argv of NanoClaw itself are built as upstream builds them (src/container-runner.ts,
buildContainerArgs, at v1.2.53 and v2.0.64; src/container-runtime.ts for stop, ps and info).
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import jinja2
import pytest
from ansible.module_utils.parsing.convert_bool import boolean

TEMPLATE = Path(__file__).resolve().parents[3] / "roles" / "nanoclaw" / "templates" / "docker-wrapper.sh.j2"
LIMITS = ["--cpus=2", "--memory=4096m", "--pids-limit=256"]
HARDENING = [
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--tmpfs",
    "/tmp:mode=1777",
    "--tmpfs",
    "/home/node:mode=1777",
]
SLUG = "3f2a9c1d"
V2_IMAGE = f"nanoclaw-agent-v2-{SLUG}:latest"


def render(tmp_path: Path, limits: bool = True, hardening: bool = True) -> tuple[Path, Path]:
    """The wrapper and the file where the fake real docker writes its argv."""
    record = tmp_path / "argv"
    real = tmp_path / "real-docker"
    real.write_text(f'#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > {shlex.quote(str(record))}\n')
    real.chmod(0o755)
    # As Ansible's template module renders: trim_blocks on.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters["quote"] = lambda s: shlex.quote(str(s))
    env.filters["bool"] = lambda v: boolean(v, strict=False)
    text = env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="Ansible managed (test)",
        __nanoclaw_root="/home/nanoclaw/nanoclaw",
        nanoclaw_docker_command=str(real),
        nanoclaw_agent_limits=limits,
        nanoclaw_agent_hardening=hardening,
        nanoclaw_agent_cpus=2,
        nanoclaw_agent_memory_mib=4096,
        nanoclaw_agent_pids_limit=256,
    )
    wrapper = tmp_path / "docker"
    wrapper.write_text(text)
    wrapper.chmod(0o755)
    return wrapper, record


@pytest.fixture
def wrapper(tmp_path):
    return render(tmp_path)


def call(wrapper_and_record, *argv: str) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    wrapper, record = wrapper_and_record
    record.unlink(missing_ok=True)
    proc = subprocess.run(["/bin/sh", str(wrapper), *argv], capture_output=True, text=True, check=False, timeout=30)
    got = record.read_text().split("\0")[:-1] if record.exists() else None
    return proc, got


def v1_run_args(image: str = "nanoclaw-agent:latest") -> list[str]:
    """v1.2.53 buildContainerArgs: run -i --rm --name, -e TZ, --add-host, --user + HOME, mounts, image."""
    return [
        "run", "-i", "--rm", "--name", "nanoclaw-main-1733100000000",
        "-e", "TZ=Europe/Berlin",
        "--add-host=host.docker.internal:host-gateway",
        "--user", "1001:1001", "-e", "HOME=/home/node",
        "-v", "/home/nanoclaw/nanoclaw:/workspace/project:ro",
        "-v", "/dev/null:/workspace/project/.env:ro",
        "-v", "/home/nanoclaw/nanoclaw/groups/main:/workspace/group",
        "-v", "/home/nanoclaw/nanoclaw/data/sessions/main/.claude:/home/node/.claude",
        "-v", "/home/nanoclaw/nanoclaw/data/ipc/main:/workspace/ipc",
        "-v", "/home/nanoclaw/nanoclaw/data/sessions/main/agent-runner-src:/app/src",
        image,
    ]  # fmt: skip


def v2_run_args(image: str = V2_IMAGE) -> list[str]:
    """v2.0.64 buildContainerArgs: run --rm --name --label, -e, OneCLI's -e/-v, mounts, --entrypoint bash IMAGE -c."""
    sess = "/home/nanoclaw/nanoclaw/data/v2-sessions/ag-1/sess-1"
    return [
        "run", "--rm", "--name", "nanoclaw-v2-ag-1-sess-1", "--label", f"nanoclaw-install={SLUG}",
        "-e", "TZ=Europe/Berlin",
        "-e", "HTTPS_PROXY=http://host.docker.internal:10255",
        "-v", "/home/nanoclaw/.onecli/ca.pem:/usr/local/share/ca-certificates/onecli.crt:ro",
        "--add-host=host.docker.internal:host-gateway",
        "--user", "1001:1001", "-e", "HOME=/home/node",
        "-v", f"{sess}:/workspace",
        "-v", "/home/nanoclaw/nanoclaw/groups/main:/workspace/agent",
        "-v", "/home/nanoclaw/nanoclaw/groups/main/container.json:/workspace/agent/container.json:ro",
        "-v", "/home/nanoclaw/nanoclaw/data/v2-sessions/ag-1/.claude-shared:/home/node/.claude",
        "-v", "/home/nanoclaw/nanoclaw/container/agent-runner/src:/app/src:ro",
        "--entrypoint", "bash",
        image, "-c", "exec bun run /app/src/index.ts",
    ]  # fmt: skip


# ------------------------------------------------------------------ what NanoClaw runs
@pytest.mark.parametrize(
    "argv",
    [
        v1_run_args(),
        v2_run_args(),
        v2_run_args(f"nanoclaw-agent-v2-{SLUG}:ag-1"),  # v2's per-agent-group image
        v1_run_args("docker.io/library/nanoclaw-agent:latest"),
        v1_run_args("localhost/nanoclaw-agent:latest"),
        v1_run_args("registry.example:5000/team/agent@sha256:" + "a" * 64),
    ],
    ids=["v1", "v2", "v2-per-group-image", "docker.io-name", "localhost-name", "registry-digest"],
)
def test_every_run_gets_limits_and_hardening_before_nanoclaws_arguments(wrapper, argv):
    proc, got = call(wrapper, *argv)
    assert proc.returncode == 0, proc.stderr
    assert got == ["run", *LIMITS, *HARDENING, *argv[1:]]


@pytest.mark.parametrize(
    ("words", "argv"),
    [
        (["container", "run"], ["--rm", "--name", "a", "img", "sleep", "1"]),
        (["create"], ["--name", "a", "img", "sleep", "1"]),
        (["container", "create"], ["--name", "a", "img"]),
    ],
)
def test_container_run_and_create_are_hardened_too(wrapper, words, argv):
    proc, got = call(wrapper, *words, *argv)
    assert proc.returncode == 0, proc.stderr
    assert got == [*words, *LIMITS, *HARDENING, *argv]


def test_the_agents_command_after_the_image_is_not_read(wrapper):
    argv = ["run", "--rm", "img", "sh", "-c", "echo --privileged --memory=0 -v /:/host"]
    proc, got = call(wrapper, *argv)
    assert proc.returncode == 0, proc.stderr
    assert got == ["run", *LIMITS, *HARDENING, *argv[1:]]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "-it", "--rm", "img"],
        ["run", "-d", "-eFOO=1", "-uroot", "img"],
        ["run", "-itv", "/home/nanoclaw/x:/x", "img"],
        ["run", "--rm", "--", "img", "--privileged"],
        ["run", "--read-only", "--read-only=true", "--init", "--network=none", "--network", "slirp4netns", "img"],
        ["run", "--mount", "type=bind,source=/home/nanoclaw/x,target=/x,readonly", "img"],
        ["run", "--cap-drop", "NET_RAW", "--tmpfs", "/run", "--shm-size", "64m", "img"],
    ],
    ids=["short-cluster", "attached-short-values", "cluster-ending-in-value", "double-dash", "harmless-flags", "mount", "cap-drop"],
)
def test_harmless_options_pass_in_every_spelling(wrapper, argv):
    proc, got = call(wrapper, *argv)
    assert proc.returncode == 0, proc.stderr
    assert got == ["run", *LIMITS, *HARDENING, *argv[1:]]


@pytest.mark.parametrize(
    "argv",
    [
        ["info"],
        ["ps", "--filter", f"label=nanoclaw-install={SLUG}", "--format", "{{.Names}}"],
        ["ps", "--filter", "name=nanoclaw-", "--format", "{{.Names}}"],
        ["stop", "-t", "1", "nanoclaw-main-1"],
        ["build", "-t", f"nanoclaw-agent-v2-{SLUG}:ag-1", "-f", "/tmp/Dockerfile.ag-1", "."],
        ["image", "inspect", "nanoclaw-agent:latest"],
        ["container", "inspect", "x"],
        ["rm", "-f", "x"],
        ["logs", "x"],
        ["--version"],
        ["version"],
    ],
)
def test_nanoclaws_other_commands_pass_unchanged(wrapper, argv):
    proc, got = call(wrapper, *argv)
    assert proc.returncode == 0, proc.stderr
    assert got == argv


# ------------------------------------------------------------------ what must not win
REFUSED = [
    # limits
    (["run", "--memory=0", "img"], "--memory"),
    (["run", "--memory", "0", "img"], "--memory"),
    (["run", "-m0", "img"], "-m"),
    (["run", "-m", "0", "img"], "-m"),
    (["run", "-itm", "0", "img"], "-m"),
    (["run", "--cpus", "64", "img"], "--cpus"),
    (["run", "--pids-limit=-1", "img"], "--pids-limit"),
    (["run", "--memory-swap=-1", "img"], "--memory-swap"),
    (["run", "--ulimit", "nproc=1000000", "img"], "--ulimit"),
    (["run", "-c", "100000", "img"], "-c"),
    (["run", "--oom-kill-disable", "img"], "--oom-kill-disable"),
    # hardening
    (["run", "--privileged", "img"], "--privileged"),
    (["run", "--privileged=true", "img"], "--privileged"),
    (["run", "--cap-add=ALL", "img"], "--cap-add"),
    (["run", "--cap-add", "SYS_ADMIN", "img"], "--cap-add"),
    (["run", "--security-opt", "seccomp=unconfined", "img"], "--security-opt"),
    (["run", "--security-opt=apparmor=unconfined", "img"], "--security-opt"),
    (["run", "--security-opt=no-new-privileges=false", "img"], "--security-opt"),
    (["run", "--read-only=false", "img"], "--read-only=false"),
    (["run", "--userns=host", "img"], "--userns"),
    (["run", "--pid", "host", "img"], "--pid"),
    (["run", "--ipc=host", "img"], "--ipc"),
    (["run", "--uts=host", "img"], "--uts"),
    (["run", "--cgroupns=host", "img"], "--cgroupns"),
    (["run", "--cgroups=disabled", "img"], "--cgroups"),
    (["run", "--cgroup-parent=/", "img"], "--cgroup-parent"),
    (["run", "--device", "/dev/kvm", "img"], "--device"),
    (["run", "--gpus", "all", "img"], "--gpus"),
    (["run", "--group-add", "keep-groups", "img"], "--group-add"),
    (["run", "--sysctl", "kernel.x=1", "img"], "--sysctl"),
    (["run", "--runtime=runc-unsafe", "img"], "--runtime"),
    (["run", "--volumes-from", "other", "img"], "--volumes-from"),
    (["run", "--use-api-socket", "img"], "--use-api-socket"),
    (["run", "--annotation", "run.oci.keep_original_groups=1", "img"], "--annotation"),
    (["run", "--pod", "other", "img"], "--pod"),
    (["run", "--rootfs", "/", "img"], "--rootfs"),
    (["run", "--env-host", "img"], "--env-host"),
    (["run", "--network=host", "img"], "--network host"),
    (["run", "--net", "host", "img"], "--network host"),
    (["run", "--network", "container:other", "img"], "--network container:other"),
    (["run", "--network", "slirp4netns:allow_host_loopback=true", "img"], "allow_host_loopback"),
    # host paths an agent must never see
    (["run", "-v", "/var/run/docker.sock:/var/run/docker.sock", "img"], "/var/run/docker.sock"),
    (["run", "-v", "/run/user/1001:/r", "img"], "/run/user/1001"),
    (["run", "-v/run/user/1001/podman/podman.sock:/s", "img"], "podman.sock"),
    (["run", "--volume=/:/host", "img"], "host path /"),
    (["run", "--mount", "type=bind,source=/run/user/1001,target=/r", "img"], "/run/user/1001"),
    (["run", "--mount", "type=bind,src=/home/n/x,dst=/x,bind-propagation=rshared", "img"], "bind-propagation"),
    # options the wrapper does not know: it could not tell where the image is
    (["run", "--frobnicate", "img"], "unknown option --frobnicate"),
    (["run", "-Z", "img"], "unknown option -Z"),
    (["run", "--rm"], "no image"),
    # later in the argv, or in another spelling of the command
    (["container", "run", "--rm", "--name", "x", "--privileged", "img"], "--privileged"),
    (["create", "--memory=0", "img"], "--memory"),
    (["container", "create", "--cap-add=ALL", "img"], "--cap-add"),
    (["run", *v1_run_args()[1:-1], "--memory=0", "nanoclaw-agent:latest"], "--memory"),
    (["run", *v2_run_args()[1:-5], "--cap-add=ALL", *v2_run_args()[-5:]], "--cap-add"),
    # global options before the command: another engine, host, context or configuration
    (["-H", "tcp://127.0.0.1:2375", "run", "img"], "global option -H"),
    (["--host=unix:///run/docker.sock", "run", "img"], "global option --host"),
    (["--context", "other", "run", "img"], "global option --context"),
    (["-c", "other", "run", "img"], "global option -c"),
    (["--config", "/tmp/x", "run", "img"], "global option --config"),
    (["--log-level", "debug", "run", "img"], "global option --log-level"),
    (["--runtime", "/tmp/evil", "run", "img"], "global option --runtime"),
    (["--root", "/tmp/store", "run", "img"], "global option --root"),
    (["--url", "unix:///tmp/s", "run", "img"], "global option --url"),
    # commands that start or change containers outside run/create, or reach the host
    (["update", "--memory=0", "x"], "the command update"),
    (["container", "update", "--pids-limit=-1", "x"], "container update"),
    (["exec", "--privileged", "x", "sh"], "exec --privileged"),
    (["container", "exec", "--privileged=true", "x", "sh"], "container exec --privileged"),
    (["compose", "up"], "the command compose"),
    (["plugin", "install", "x"], "the command plugin"),
    (["service", "create", "img"], "the command service"),
    (["context", "use", "other"], "the command context"),
    (["kube", "play", "pod.yaml"], "the command kube"),
    (["play", "kube", "pod.yaml"], "the command play"),
    (["pod", "create"], "the command pod"),
    (["volume", "create", "--opt", "type=none", "--opt", "device=/", "--opt", "o=bind", "v"], "volume create"),
    (["network", "create", "x"], "network create"),
    (["system", "service"], "system service"),
    (["build", "--allow", "security.insecure", "."], "build --allow"),
    (["build", "--network", "host", "."], "build --network host"),
    (["build", "--network=host", "."], "build --network=host"),
    (["build", "--security-opt", "seccomp=unconfined", "."], "build --security-opt"),
    (["build", "-v", "/:/host", "."], "build -v"),
    (["buildx", "build", "--allow=security.insecure", "."], "buildx build --allow"),
    (["image", "build", "--secret", "id=k,src=/home/n/.ssh/id_rsa", "."], "image build --secret"),
    (["buildx", "create", "--driver-opt", "x"], "buildx create"),
]


@pytest.mark.parametrize(("argv", "named"), REFUSED, ids=[" ".join(a)[:60] for a, _n in REFUSED])
def test_overrides_are_refused_and_the_real_docker_is_never_called(wrapper, argv, named):
    proc, got = call(wrapper, *argv)
    assert proc.returncode == 125, (proc.returncode, proc.stderr, got)
    assert got is None, f"the real docker ran with {got}"
    assert "nanoclaw docker wrapper: refused:" in proc.stderr
    assert named in proc.stderr, proc.stderr


def test_a_symlink_to_the_runtime_directory_is_followed(tmp_path):
    wrapper = render(tmp_path)
    link = tmp_path / "innocent"
    link.symlink_to("/run/user/0" if Path("/run/user/0").exists() else "/run")
    proc, got = call(wrapper, "run", "-v", f"{link}:/x", "img")
    assert proc.returncode == 125
    assert got is None


# ------------------------------------------------------------------ switched off by the operator
def test_without_limits_the_agents_limits_pass_and_none_are_added(tmp_path):
    wrapper = render(tmp_path, limits=False)
    proc, got = call(wrapper, "run", "--memory=1g", "img")
    assert proc.returncode == 0, proc.stderr
    assert got == ["run", *HARDENING, "--memory=1g", "img"]
    proc, _seen = call(wrapper, "run", "--privileged", "img")
    assert proc.returncode == 125


def test_without_hardening_privileged_passes_and_limits_hold(tmp_path):
    wrapper = render(tmp_path, hardening=False)
    proc, got = call(wrapper, "run", "--cap-add=NET_ADMIN", "img")
    assert proc.returncode == 0, proc.stderr
    assert got == ["run", *LIMITS, "--cap-add=NET_ADMIN", "img"]
    proc, _seen = call(wrapper, "run", "--memory=0", "img")
    assert proc.returncode == 125
