"""runtime_host_facts: the parsing behind cgroup, mount and WSL detection."""

from __future__ import annotations

from ansible_collections.nanoclaw.provision.plugins.modules import runtime_host_facts as m

MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a
23 22 0:22 / /proc rw,nosuid - proc proc rw
24 22 0:23 / /home rw,relatime master:3 - ext4 /dev/sda1 rw
25 24 0:24 / /home/with\\040space rw - tmpfs tmpfs rw
"""


def test_mountinfo_fstype_and_propagation():
    mounts = m.parse_mountinfo(MOUNTINFO)
    assert m.mount_of("/", mounts) == {"mount_point": "/", "fstype": "overlay", "propagation": "shared"}
    assert m.mount_of("/home/nanoclaw", mounts)["fstype"] == "ext4"
    assert m.mount_of("/home/nanoclaw", mounts)["propagation"] == "slave"
    assert m.mount_of("/home/with space/x", mounts)["fstype"] == "tmpfs"
    assert m.mount_of("/homework", mounts)["fstype"] == "overlay"
    assert m.mount_of("/proc/1", mounts)["propagation"] == "private"


def test_wsl_conf_systemd():
    assert m.wsl_systemd("[boot]\nsystemd=true\n")
    assert m.wsl_systemd('[Boot]\n  systemd = "true"  # on\n')
    assert not m.wsl_systemd("[boot]\nsystemd=false\n")
    assert not m.wsl_systemd("[network]\nsystemd=true\n")
    assert not m.wsl_systemd("")


def test_cgroup_mode(tmp_path):
    assert m.cgroup_mode(str(tmp_path)) == "v1"
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert m.cgroup_mode(str(tmp_path)) == "hybrid"
    (tmp_path / "cgroup.controllers").write_text("cpu memory")
    assert m.cgroup_mode(str(tmp_path)) == "v2"


def test_device_usability(tmp_path):
    dev = tmp_path / "tun"
    dev.write_text("")
    dev.chmod(0o600)
    assert m.device_info(str(dev)) == {"exists": True, "mode": "0600", "usable": False}
    dev.chmod(0o666)
    assert m.device_info(str(dev))["usable"] is True
    assert m.device_info(str(tmp_path / "none"))["exists"] is False


def test_nearest_existing(tmp_path):
    assert m.nearest_existing(str(tmp_path / "a" / "b")) == str(tmp_path.resolve())
