"""Target image recipes: the mirror comes from the host's apt sources, hashes track recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import images
from tests.harness.common import HarnessError


def test_recipe_hash_differs_per_suite_and_is_stable() -> None:
    a, b = images.TARGETS
    assert a.recipe_hash() != b.recipe_hash()
    assert a.recipe_hash() == images.TargetImage(a.suite, a.version).recipe_hash()


def test_recipe_hash_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.TARGETS[0].recipe_hash()
    monkeypatch.setattr(images, "TARGET_PACKAGES", [*images.TARGET_PACKAGES, "curl"])
    assert images.TARGETS[0].recipe_hash() != before


def test_image_names_carry_the_debian_release() -> None:
    assert [t.name for t in images.TARGETS] == [
        "localhost/nanoclaw-target:debian12",
        "localhost/nanoclaw-target:debian13",
    ]


def test_mirror_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOCLAW_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    assert images.debian_mirror() == "http://mirror.invalid/debian"


def test_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NANOCLAW_DEBIAN_MIRROR", raising=False)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a.sources").write_text("Types: deb\nURIs: http://example.invalid/debian-security\nSuites: x\n")
    (d / "b.sources").write_text("Types: deb\nURIs: http://example.invalid/debian/\nSuites: x\n")
    real_path = images.Path

    def fake_path(p: str, *rest: str) -> Path:
        if p == "/etc/apt/sources.list":
            return tmp_path / "missing.list"
        if p == "/etc/apt/sources.list.d":
            return d
        return real_path(p, *rest)

    monkeypatch.setattr(images, "Path", fake_path)
    assert images.debian_mirror() == "http://example.invalid/debian"
    (d / "b.sources").unlink()
    with pytest.raises(HarnessError, match="NANOCLAW_DEBIAN_MIRROR"):
        images.debian_mirror()
