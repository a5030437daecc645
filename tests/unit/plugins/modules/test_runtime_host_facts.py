"""runtime_host_facts' ``expect``: when a later task may be skipped (real files under tmp_path)."""

from __future__ import annotations

import os

from ansible_collections.nanoclaw.provision.plugins.modules import runtime_host_facts as mod


def test_a_directory_matches_only_with_its_type_owner_and_mode(tmp_path):
    d = tmp_path / "containers.conf.d"
    d.mkdir()
    d.chmod(0o755)
    uid, gid = os.getuid(), os.getgid()
    want = {"path": str(d), "state": "directory", "owner": str(uid), "group": str(gid), "mode": "0755"}
    assert mod.matches(want)
    d.chmod(0o777)
    assert not mod.matches(want), "a mode drifted since the last run must make the task run again"
    d.chmod(0o755)
    assert not mod.matches({**want, "owner": str(uid + 1)}), "another owner"
    assert not mod.matches({**want, "group": str(gid + 1)}), "another group"
    assert not mod.matches({**want, "owner": "no-such-user-here"}), "an owner the host does not know"
    assert not mod.matches({**want, "state": "file"})
    assert mod.matches({"path": str(d)}), "type only"


def test_a_symlink_never_matches_and_a_missing_path_matches_absent_only(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert not mod.matches({"path": str(link), "state": "directory"})
    missing = str(tmp_path / "missing")
    assert not mod.matches({"path": missing, "state": "directory"})
    assert mod.matches({"path": missing, "state": "absent"})
    assert not mod.matches({"path": str(real), "state": "absent"})
    f = tmp_path / "fact"
    f.write_text("{}")
    f.chmod(0o644)
    assert mod.matches({"path": str(f), "state": "file", "mode": "644"})


def test_a_socket_listens_only_while_a_process_accepts_on_it(tmp_path):
    import socket

    path = str(tmp_path / "bus")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    link = tmp_path / "link"
    link.symlink_to(path)
    try:
        assert mod.listening(path)
        assert not mod.listening(str(link)), "a symbolic link is not connected to"
    finally:
        server.close()
    # The file stays behind when its listener is gone (a stopped user manager leaves such a socket).
    assert os.path.exists(path)
    assert not mod.listening(path)
    assert not mod.listening(str(tmp_path / "missing"))


def test_a_file_matches_only_with_the_content_the_task_would_write(tmp_path):
    import hashlib

    f = tmp_path / "50-nanoclaw.conf"
    f.write_text("[engine]\nruntime = 'crun'\n")
    f.chmod(0o644)
    want = {"path": str(f), "state": "file", "mode": "0644", "checksum": hashlib.sha1(f.read_bytes()).hexdigest()}
    assert mod.matches(want)
    f.write_text("[engine]\nruntime = 'runc'\n")
    assert not mod.matches(want), "an edited file must make the template task run again"
    link = tmp_path / "link.conf"
    link.symlink_to(f)
    assert not mod.matches({**want, "path": str(link)})
    big = tmp_path / "big"
    big.write_bytes(b"x" * (mod.MAX_HASHED + 1))
    assert not mod.matches({"path": str(big), "state": "file", "checksum": hashlib.sha1(big.read_bytes()).hexdigest()})


def test_a_listing_is_of_a_real_directory_only(tmp_path):
    d = tmp_path / "ca-certificates"
    d.mkdir()
    (d / "b.crt").write_text("b")
    (d / "a.crt").write_text("a")
    assert mod.listing(str(d)) == ["a.crt", "b.crt"]
    link = tmp_path / "link"
    link.symlink_to(d)
    assert mod.listing(str(link)) is None
    assert mod.listing(str(d / "a.crt")) is None
    assert mod.listing(str(tmp_path / "missing")) is None


def test_read_and_sha256_open_regular_files_only_and_never_follow_a_link(tmp_path):
    import hashlib

    record = tmp_path / "build.json"
    record.write_text('{"commit": "abc"}')
    secret = tmp_path / "shadow"
    secret.write_text("root only")
    link = tmp_path / "planted.json"
    link.symlink_to(secret)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert mod._text(str(record)) == '{"commit": "abc"}'
    assert mod._sha256(str(record)) == hashlib.sha256(record.read_bytes()).hexdigest()
    for path in (link, fifo, tmp_path / "missing", tmp_path):
        assert mod._text(str(path)) is None, path
        assert mod._sha256(str(path)) is None, path
    assert mod._text("/proc/version"), "files of /proc are read (their size says 0)"


def test_wsl_is_told_apart_from_the_kernel_version_the_environment_and_interop():
    wsl2_kernel = "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1c602f52c2e4) (gcc 11.2.0)"
    wsl1_kernel = "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0)"
    debian = "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0)"
    assert mod.wsl_kind(wsl2_kernel, {}, False) == "wsl2"
    assert mod.wsl_kind(wsl1_kernel, {}, False) == "wsl1"
    assert mod.wsl_kind(debian, {}, False) == "none"
    # A custom kernel under WSL: only the environment or the interop entry says WSL.
    assert mod.wsl_kind(debian, {"WSL_DISTRO_NAME": "Debian"}, False) == "wsl1"
    assert mod.wsl_kind(debian, {"WSL_INTEROP": "/run/WSL/1_interop"}, False) == "wsl1"
    assert mod.wsl_kind(debian, {}, True) == "wsl1"
    assert mod.wsl_kind(debian.replace("amd64", "wsl2"), {"WSL_DISTRO_NAME": "Debian"}, False) == "wsl2"
