#!/usr/bin/python
# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the host facts a container runtime role decides on, in one pass."""

from __future__ import annotations

DOCUMENTATION = r"""
module: runtime_host_facts
short_description: Read the host facts that decide how a container runtime is set up
version_added: 0.1.0
author: nanoclaw.provision maintainers (@nanoclaw)
description:
  - Reads, without changing anything, what the runtime roles of nanoclaw.provision decide on
    (rootless Podman, Docker, rootless Docker).
  - The cgroup mode (V(v2), V(hybrid) or V(v1)), the hard limits of open files and processes, whether
    C(/dev/net/tun) and C(/dev/fuse) are usable by unprivileged users, the file system type under a path,
    the mount propagation of C(/), and whether the host is WSL2 with systemd enabled in C(/etc/wsl.conf).
options:
  path:
    description:
      - Path whose file system type is reported (the nearest existing parent is used when it does not exist yet).
    type: path
    default: /
  devices:
    description: Device nodes to look at (none unless named, for example V([/dev/net/tun, /dev/fuse])).
    type: list
    elements: path
    default: []
  read:
    description:
      - Small text files whose content is returned in RV(files) (V(null) when missing).
      - Each is opened without following a link and without blocking, and read only when it is a
        regular file of at most 1 MiB (else V(null)).
    type: list
    elements: path
    default: []
  sha256:
    description: Files whose SHA-256 RV(sha256) returns, opened as O(read) opens them (V(null) when missing).
    type: list
    elements: path
    default: []
  exists:
    description: Paths whose existence is returned in RV(paths).
    type: list
    elements: path
    default: []
  list:
    description: Directories whose entries RV(listing) returns (a path that is not a directory, a link included, gives V(null)).
    type: list
    elements: path
    default: []
  sockets:
    description:
      - Unix sockets whose listener RV(listening) reports (a connection is opened and closed at once,
        nothing is sent); a path that is not a socket (a symbolic link, for one) is not connected to.
    type: list
    elements: path
    default: []
  expect:
    description:
      - Paths and the state a later task gives them; RV(matches) says for each whether it is in that state
        already, so that task can be skipped on a rerun without a round trip of its own.
      - The path is looked at with C(lstat), so a symbolic link never matches a directory or a file.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: What the path must be.
        type: str
        choices: [directory, file, absent]
        default: directory
      owner:
        description: Owner (name or uid); not compared when omitted.
        type: str
      group:
        description: Group (name or gid); not compared when omitted.
        type: str
      mode:
        description: Permission bits as an octal string, for example V('0755'); not compared when omitted.
        type: str
      checksum:
        description:
          - SHA-1 of the content a file must have (what the C(template) or C(copy) task would write, for
            example C(lookup('ansible.builtin.template', 'x.j2') | hash('sha1'))); not compared when omitted.
          - The file is opened without following a link and without blocking; one over 1 MiB never matches.
        type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
  - nanoclaw.provision.attributes.check_mode_no_diff
"""

EXAMPLES = r"""
- name: Read the host facts
  nanoclaw.provision.runtime_host_facts:
    path: /home/nanoclaw
  register: host_facts
"""

RETURN = r"""
cgroup_mode:
  description: V(v2) (unified), V(hybrid) (v1 with a unified mount) or V(v1).
  returned: always
  type: str
nofile_hard:
  description: Hard limit of open files of the module's process (V(-1) for unlimited).
  returned: always
  type: int
nproc_hard:
  description: Hard limit of processes of the module's process (V(-1) for unlimited).
  returned: always
  type: int
devices:
  description: Per device, C(exists), C(mode) (octal string) and C(usable) (readable and writable by others).
  returned: always
  type: dict
fs_type:
  description: File system type under O(path), from C(/proc/self/mountinfo).
  returned: always
  type: str
fs_path:
  description: The existing path whose file system was looked at.
  returned: always
  type: str
root_propagation:
  description: The propagation of the C(/) mount, V(shared), V(private) or V(slave).
  returned: always
  type: str
wsl:
  description:
    - V(wsl2) for a WSL2 kernel, V(wsl1) for WSL1 (C(/proc/version) names Microsoft, or the WSL
      environment variables or C(/proc/sys/fs/binfmt_misc/WSLInterop) are there, but the kernel is not
      a WSL2 one), else V(none). The one place the collection tells WSL apart.
  returned: always
  type: str
  choices: [wsl2, wsl1, none]
wsl2:
  description: The kernel is a WSL2 kernel (RV(wsl) is V(wsl2)).
  returned: always
  type: bool
wsl_systemd:
  description: C(/etc/wsl.conf) enables systemd (C([boot] systemd=true)).
  returned: always
  type: bool
kernel:
  description: Kernel release (C(uname -r)).
  returned: always
  type: str
files:
  description: Content of each file of O(read), V(null) when it does not exist.
  returned: always
  type: dict
sha256:
  description: SHA-256 (hex) of each file of O(sha256), V(null) when it does not exist.
  returned: always
  type: dict
paths:
  description: Whether each path of O(exists) exists.
  returned: always
  type: dict
listing:
  description: For each directory of O(list), the sorted names of its entries, V(null) when it is not a directory.
  returned: always
  type: dict
listening:
  description: For each socket of O(sockets), whether something accepts connections on it.
  returned: always
  type: dict
matches:
  description:
    - For each path of O(expect), whether it is in the expected state (type, owner, group and mode).
    - V(false) for an owner or group that does not exist on the host.
  returned: always
  type: dict
  sample: {"/etc/containers/containers.conf.d": true}
"""

import grp
import hashlib
import os
import platform
import pwd
import re
import resource
import socket
import stat

from ansible.module_utils.basic import AnsibleModule


def cgroup_mode(root: str = "/sys/fs/cgroup") -> str:
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if os.path.exists(os.path.join(root, "unified", "cgroup.controllers")):
        return "hybrid"
    return "v1"


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[dict]:
    """Mount point, fstype and propagation of each line of /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or not tail:
            continue
        optional = fields[6:]
        propagation = (
            "shared"
            if any(o.startswith("shared:") for o in optional)
            else ("slave" if any(o.startswith("master:") for o in optional) else "private")
        )
        mounts.append({"mount_point": _unescape(fields[4]), "fstype": tail[0], "propagation": propagation})
    return mounts


def mount_of(path: str, mounts: list[dict]) -> dict:
    """The mount a path lies on: the last mounted of the longest matching mount points."""
    best, best_len = {"mount_point": "/", "fstype": "unknown", "propagation": "private"}, -1
    for m in mounts:
        mp = m["mount_point"]
        inside = path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/"
        if inside and len(mp) >= best_len:
            best, best_len = m, len(mp)
    return best


def nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return os.path.realpath(path)


def wsl_kind(proc_version: str, environ: dict[str, str], interop: bool) -> str:
    """wsl2, wsl1 or none: a WSL2 kernel says so in its version string; WSL1 has a Microsoft
    version string, or WSL's environment variables or binfmt interop entry, without it."""
    version = proc_version.lower()
    wsl = "microsoft" in version or "WSL_DISTRO_NAME" in environ or "WSL_INTEROP" in environ or interop
    if not wsl:
        return "none"
    return "wsl2" if re.search(r"microsoft-standard|wsl2", version) else "wsl1"


def wsl_systemd(text: str) -> bool:
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
        elif section == "boot" and "=" in line:
            key, value = (p.strip().lower() for p in line.split("=", 1))
            if key == "systemd" and value.strip("\"'") == "true":
                return True
    return False


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _limit(which: int) -> int:
    hard = resource.getrlimit(which)[1]
    return -1 if hard == resource.RLIM_INFINITY else int(hard)


def device_info(path: str) -> dict:
    try:
        st = os.stat(path)
    except OSError:
        return {"exists": False, "mode": "missing", "usable": False}
    mode = stat.S_IMODE(st.st_mode)
    return {"exists": True, "mode": f"{mode:04o}", "usable": bool(mode & stat.S_IROTH and mode & stat.S_IWOTH)}


def listing(path: str) -> list[str] | None:
    """Sorted entry names of a directory (lstat first: a link to one is not listed)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return None
        return sorted(os.listdir(path))
    except OSError:
        return None


def listening(path: str) -> bool:
    """Whether a process accepts connections on the unix socket ``path`` (lstat first: no link followed)."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
        return True
    except OSError:
        return False


def _id(name: str | None, lookup, attribute: str) -> int | None:
    """A uid or gid from a name or a number; None for a name the host does not know."""
    if name is None or str(name).isdigit():
        return None if name is None else int(name)
    try:
        return getattr(lookup(str(name)), attribute)
    except KeyError:
        return None


def matches(expect: dict) -> bool:
    """Whether ``expect['path']`` is (lstat, no link followed) in the state ``expect`` gives."""
    try:
        st = os.lstat(expect["path"])
    except FileNotFoundError:
        return expect.get("state", "directory") == "absent"
    except OSError:
        return False
    state = expect.get("state") or "directory"
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    if kind != state:
        return False
    for key, lookup, attribute, actual in (
        ("owner", pwd.getpwnam, "pw_uid", st.st_uid),
        ("group", grp.getgrnam, "gr_gid", st.st_gid),
    ):
        if expect.get(key) is not None and _id(expect[key], lookup, attribute) != actual:
            return False
    mode = expect.get("mode")
    if mode is not None and int(str(mode), 8) != stat.S_IMODE(st.st_mode):
        return False
    return expect.get("checksum") is None or _sha1(expect["path"]) == expect["checksum"].lower()


MAX_HASHED = 1024 * 1024


def read_file(path: str) -> bytes | None:
    """A regular file of at most MAX_HASHED bytes, opened without following a link or blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_HASHED:
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_HASHED + 1)
    return data if len(data) <= MAX_HASHED else None


def _sha1(path: str) -> str | None:
    data = read_file(path)
    return None if data is None else hashlib.sha1(data).hexdigest()  # nosec - a content fingerprint, as Ansible's own


def _sha256(path: str) -> str | None:
    data = read_file(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _text(path: str) -> str | None:
    data = read_file(path)
    return None if data is None else data.decode("utf-8", errors="replace")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/"},
            "devices": {"type": "list", "elements": "path", "default": []},
            "read": {"type": "list", "elements": "path", "default": []},
            "sha256": {"type": "list", "elements": "path", "default": []},
            "exists": {"type": "list", "elements": "path", "default": []},
            "list": {"type": "list", "elements": "path", "default": []},
            "sockets": {"type": "list", "elements": "path", "default": []},
            "expect": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "choices": ["directory", "file", "absent"], "default": "directory"},
                    "owner": {"type": "str"},
                    "group": {"type": "str"},
                    "mode": {"type": "str"},
                    "checksum": {"type": "str"},
                },
            },
        },
        supports_check_mode=True,
    )
    for expect in module.params["expect"]:
        if expect["mode"] is not None and not re.fullmatch(r"0?[0-7]{3,4}", expect["mode"]):
            module.fail_json(msg=f"expect: mode {expect['mode']!r} of {expect['path']} is not an octal string such as '0755'")
    mounts = parse_mountinfo(_read("/proc/self/mountinfo"))
    fs_path = nearest_existing(module.params["path"])
    wsl = wsl_kind(_read("/proc/version"), dict(os.environ), os.path.exists("/proc/sys/fs/binfmt_misc/WSLInterop"))
    module.exit_json(
        changed=False,
        cgroup_mode=cgroup_mode(),
        nofile_hard=_limit(resource.RLIMIT_NOFILE),
        nproc_hard=_limit(resource.RLIMIT_NPROC),
        devices={d: device_info(d) for d in module.params["devices"]},
        fs_type=mount_of(fs_path, mounts)["fstype"],
        fs_path=fs_path,
        root_propagation=mount_of("/", mounts)["propagation"],
        wsl=wsl,
        wsl2=wsl == "wsl2",
        wsl_systemd=wsl_systemd(_read("/etc/wsl.conf")),
        kernel=platform.release(),
        files={f: _text(f) for f in module.params["read"]},
        sha256={f: _sha256(f) for f in module.params["sha256"]},
        paths={p: os.path.exists(p) for p in module.params["exists"]},
        listing={p: listing(p) for p in module.params["list"]},
        listening={p: listening(p) for p in module.params["sockets"]},
        matches={e["path"]: matches(e) for e in module.params["expect"]},
    )


if __name__ == "__main__":
    main()
