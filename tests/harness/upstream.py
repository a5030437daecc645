"""The real upstream NanoClaw the tests run against: a git bundle (default) or a repository URL.

Where it comes from, first match wins:

1. ``NANOCLAW_UPSTREAM``: a path to a git bundle, or any git URL (``https://github.com/qwibitai/nanoclaw.git``
   on a machine with internet). With a URL the pins are upstream's known-good commits (or
   ``NANOCLAW_UPSTREAM_V1`` / ``NANOCLAW_UPSTREAM_V2``).
2. ``shared/upstream/nanoclaw-upstream.bundle`` beside the checkout or one of its parents, or under
   ``/work/shared`` (the workplace's copy: upstream's trees at both pins as single root commits,
   branches ``v1`` and ``v2``; see its README). A bundle's pins are the heads of those branches.

``mirror()`` turns it into a bare repository in the harness cache (keyed by content), which tests
serve to their targets over ``file://``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .common import CACHE, REPO, HarnessError, log, run, sha256_of

UPSTREAM_URL = "https://github.com/qwibitai/nanoclaw.git"
# Upstream's known-good pins (the collection's, plugins/module_utils/_upstream.py KNOWN_PINS).
UPSTREAM_PINS = {"v1": "a81e1651b5e48c9194162ffa2c50a22283d5ecd3", "v2": "0683c6ec589ec0df74c2a3d99f9544127317b490"}
BUNDLE_NAME = Path("shared") / "upstream" / "nanoclaw-upstream.bundle"


@dataclass(frozen=True)
class Upstream:
    source: str  # the bundle path or URL it came from
    pins: dict  # {"v1": sha, "v2": sha}
    versions: dict  # {"v1": "1.2.53", "v2": "2.0.64"} once mirrored, else {}
    bare: Path | None = None  # the bare mirror in the cache

    def describe(self) -> str:
        pins = ", ".join(f"{g} {self.pins[g][:12]} ({self.versions.get(g, '?')})" for g in sorted(self.pins))
        return f"real upstream NanoClaw from {self.source}: {pins}"


def _candidates() -> list[Path]:
    found = []
    for parent in [REPO, *REPO.parents]:
        found.append(parent / BUNDLE_NAME)
    found.append(Path("/work") / BUNDLE_NAME)
    return found


def locate() -> tuple[str, bool]:
    """(bundle path or URL, is_bundle)."""
    given = os.environ.get("NANOCLAW_UPSTREAM", "").strip()
    if given:
        if "://" in given or given.startswith("git@"):
            return given, False
        path = Path(given).expanduser()
        if not path.is_file():
            raise HarnessError(f"NANOCLAW_UPSTREAM={given}: no such bundle file (give a git bundle or a git URL)")
        return str(path.resolve()), True
    for candidate in _candidates():
        if candidate.is_file():
            return str(candidate.resolve()), True
    raise HarnessError(
        "the real upstream NanoClaw is not available: no shared/upstream/nanoclaw-upstream.bundle beside this checkout; "
        f"set NANOCLAW_UPSTREAM to a bundle or to {UPSTREAM_URL} (with internet)"
    )


def _bundle_heads(bundle: str) -> dict[str, str]:
    out = run(["git", "bundle", "list-heads", bundle], capture=True, quiet=True).stdout
    heads = {}
    for line in out.splitlines():
        sha, _sep, ref = line.partition(" ")
        name = ref.rsplit("/", 1)[-1]
        if name in ("v1", "v2"):
            heads[name] = sha
    if set(heads) != {"v1", "v2"}:
        raise HarnessError(f"NANOCLAW_UPSTREAM={bundle}: the bundle has no branches v1 and v2 (it has {sorted(heads) or 'none'})")
    return heads


def mirror() -> Upstream:
    """The upstream source as a bare repository in the cache, with both pins verified."""
    source, is_bundle = locate()
    if is_bundle:
        pins = _bundle_heads(source)
        key = sha256_of(Path(source))[:16]
    else:
        pins = {g: os.environ.get(f"NANOCLAW_UPSTREAM_{g.upper()}", sha) for g, sha in UPSTREAM_PINS.items()}
        key = sha256_of(source, json.dumps(pins, sort_keys=True))[:16]
    bare = CACHE / "upstream" / key / "nanoclaw.git"
    if not (bare / "HEAD").exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        tmp = bare.with_suffix(".tmp")
        run(["rm", "-rf", str(tmp)], quiet=True)
        log(f"mirroring the real upstream NanoClaw from {source}")
        run(["git", "clone", "-q", "--mirror", source, str(tmp)])
        tmp.rename(bare)
    versions = {}
    for generation, sha in pins.items():
        shown = subprocess.run(["git", "-C", str(bare), "show", f"{sha}:package.json"], capture_output=True, text=True, check=False)
        if shown.returncode != 0:
            raise HarnessError(f"{source} has no commit {sha} (the {generation} pin): {shown.stderr.strip()}")
        version = json.loads(shown.stdout).get("version", "")
        if not version.startswith(generation[1:] + "."):
            raise HarnessError(f"{source}: the {generation} pin {sha} is NanoClaw {version!r}, not {generation}")
        versions[generation] = version
    return Upstream(source=source, pins=pins, versions=versions, bare=bare)
