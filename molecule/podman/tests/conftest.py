"""Helpers of the podman verify tests; they live in molecule/shared/runtime_tests.py (shared with the docker scenario)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

# Importing the fixtures (node, smoke_image) here is what makes pytest see them.
from runtime_tests import (
    ARCHIVE,
    BIN,
    FINGERPRINT,
    IMAGE,
    USER,
    as_user,
    cgroup_mode,
    fingerprint,
    local_fact,
    node,
    run_play,
    smoke_image,
    target,
)

__all__ = [
    "ARCHIVE",
    "BIN",
    "FINGERPRINT",
    "HERE",
    "IMAGE",
    "USER",
    "as_user",
    "cgroup_mode",
    "fingerprint",
    "local_fact",
    "node",
    "run_play",
    "smoke_image",
    "target",
]

HERE = Path(__file__).resolve().parent
