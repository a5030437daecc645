"""runtime_compat's record of a full run: what it hashes and where it may read and write (no engine)."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.nanoclaw.provision.plugins.modules import runtime_compat as mod


def test_a_file_is_hashed_by_content_and_a_symlink_or_fifo_is_never_opened(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text("[containers]\n")
    digest = mod._file_digest(str(conf))
    assert digest.endswith(hashlib.sha256(b"[containers]\n").hexdigest())
    conf.write_text("[containers]\nuserns = 'keep-id'\n")
    assert mod._file_digest(str(conf)) != digest
    secret = tmp_path / "secret"
    secret.write_text("root only")
    link = tmp_path / "storage.conf"
    link.symlink_to(secret)
    # What the link points to, never what it points at.
    assert mod._file_digest(str(link)) == f"link:{secret}"
    fifo = tmp_path / "registries.conf"
    os.mkfifo(fifo)
    # A FIFO (which would block a reader with no writer) is not opened.
    assert mod._file_digest(str(fifo)).startswith("mode:")
    assert mod._file_digest(str(tmp_path / "missing")) == "-"


def test_a_tree_is_walked_without_following_a_symlinked_directory(tmp_path):
    root = tmp_path / "containers"
    (root / "containers.conf.d").mkdir(parents=True)
    (root / "containers.conf.d" / "50-nanoclaw.conf").write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "hidden.conf").write_text("y")
    (root / "linked").symlink_to(elsewhere)
    found = mod._tree_digests(str(root))
    assert str(root / "containers.conf.d" / "50-nanoclaw.conf") in found
    assert not any("hidden.conf" in path for path in found)
    assert mod._tree_digests(str(root / "linked")) == {}


def test_the_record_is_written_owner_only_and_read_back(tmp_path):
    path = tmp_path / "state" / "runtime_compat.json"
    record = {"format": mod.RECORD_FORMAT, "fingerprint": "f" * 64, "time": 1.0, "checks": []}
    mod.write_record(str(path), record)
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert mod.read_record(str(path)) == record
    assert mod.read_record(str(tmp_path / "state" / "other.json")) is None


def test_a_record_in_an_untrusted_place_is_neither_read_nor_written(tmp_path):
    record = {"format": mod.RECORD_FORMAT, "fingerprint": "f" * 64, "time": 1.0, "checks": []}
    shared = tmp_path / "shared"
    shared.mkdir()
    mod.write_record(str(shared / "runtime_compat.json"), record)
    shared.chmod(0o777)
    assert mod.read_record(str(shared / "runtime_compat.json")) is None
    with pytest.raises(OSError, match="writable by others"):
        mod.write_record(str(shared / "runtime_compat.json"), record)
    shared.chmod(0o700)
    # A record that is a symlink is not followed.
    (shared / "link.json").symlink_to(shared / "runtime_compat.json")
    assert mod.read_record(str(shared / "link.json")) is None
    # An older format is not reused.
    mod.write_record(str(shared / "old.json"), {**record, "format": mod.RECORD_FORMAT - 1})
    assert mod.read_record(str(shared / "old.json")) is None
