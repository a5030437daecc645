"""Shared by the generators in tools/: compare generated files with the committed ones, and
write them (``--check`` only reports the drift)."""

from __future__ import annotations

import sys
from pathlib import Path


def sync(output: Path, expected: dict[str, str], pattern: str, *, what: str, script: str, check: bool) -> int:
    """Make ``output`` hold exactly ``expected`` (file name -> text) among the files matching ``pattern``."""
    drift = [name for name, text in expected.items() if not (output / name).exists() or (output / name).read_text() != text]
    stale = sorted(p.name for p in output.glob(pattern) if p.name not in expected) if output.exists() else []
    if check:
        if drift or stale:
            print(f"{what} drifted from the argument specs: {drift + stale}; run python3 -m {script}", file=sys.stderr)
            return 1
        return 0
    output.mkdir(parents=True, exist_ok=True)
    for name in drift:
        (output / name).write_text(expected[name])
    for name in stale:
        (output / name).unlink()
    print(f"wrote {drift or 'nothing (up to date)'}; removed {stale or 'nothing'}")
    return 0
