# Copyright: nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NanoClaw's own conventions, per generation: the one place the collection keeps them.

Roles read them through the filter ``nanoclaw.provision.nanoclaw_conventions``, modules and tests
import this file, and ``docs/NANOCLAW_ROLE.md`` quotes them. Every value was read from upstream's
source at the known-good pins (``tests/unit/plugins/module_utils/test_upstream.py`` checks the
ones that can be read mechanically against the real source in the upstream bundle):

- ``.env`` keys: the keys ``readEnvFile([...])`` asks for in ``src/`` (v1.2.53 ``src/config.ts``;
  v2.0.64 ``src/config.ts`` and ``src/providers/claude.ts``). Channel adapters read their own
  keys (tokens); those are the operator's (``nanoclaw_env_extra``).
- service environment: what ``src/`` reads from ``process.env`` only (v1 ``src/config.ts``; v2
  never reads ``MAX_CONCURRENT_CONTAINERS``, ``CONTAINER_TIMEOUT`` or ``IDLE_TIMEOUT``: the
  constants exist in ``src/config.ts`` but nothing uses them).
- unit and image names: v1 ``setup/service.ts`` (``nanoclaw.service``) and ``src/config.ts``
  (``nanoclaw-agent:latest``); v2 ``src/install-slug.ts`` (slug = first 8 hex digits of the sha1
  of the project root), ``setup/service.ts`` (``nanoclaw-v2-<slug>.service``).
- runtime-owned paths: the directories the host writes (``src/config.ts``: ``STORE_DIR``,
  ``GROUPS_DIR``, ``DATA_DIR``; ``logs/`` from the unit; ``.env``). Upstream TRACKS files under
  ``groups/`` (``groups/main/CLAUDE.md``, ``groups/global/CLAUDE.md``) and the running host changes
  them (v1 agents write memory there; v2's ``migrateGroupsToClaudeLocal`` in
  ``src/claude-md-compose.ts`` renames and deletes them): a change there is user data, never a
  local code edit.
"""

from __future__ import annotations

import hashlib
import os
import re

GENERATIONS = ("v1", "v2")

# Paths under the project root that the running NanoClaw host owns (both generations).
RUNTIME_PATHS = ("groups", "data", "store", "logs", ".env")

ENV_KEYS = {
    "v1": ("ASSISTANT_NAME", "ASSISTANT_HAS_OWN_NUMBER", "ONECLI_URL", "ONECLI_API_KEY", "TZ"),
    "v2": ("ASSISTANT_NAME", "ASSISTANT_HAS_OWN_NUMBER", "ONECLI_URL", "ONECLI_API_KEY", "TZ", "ANTHROPIC_BASE_URL"),
}

# Environment variables the host reads from its process environment only (unit Environment=).
SERVICE_ENV_KEYS = {
    "v1": ("CONTAINER_IMAGE", "CONTAINER_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONCURRENT_CONTAINERS"),
    "v2": ("CONTAINER_IMAGE",),
}

# What bounds the number of agent containers running at once.
CONCURRENCY_CAP = {
    "v1": "MAX_CONCURRENT_CONTAINERS (src/group-queue.ts queues sessions above it)",
    "v2": "nothing: one container per active session, no cap in the host",
}

# Known-good pins of upstream qwibitai/nanoclaw.
KNOWN_PINS = {
    "a81e1651b5e48c9194162ffa2c50a22283d5ecd3": "v1",
    "0683c6ec589ec0df74c2a3d99f9544127317b490": "v2",
}

# How each generation reports that it cannot start, and what the operator does about it:
# (substring of upstream's log, explanation). v1 src/index.ts main(): `logger.fatal('No channels
# connected')` then exit 1 when no channel is installed or none has credentials.
KNOWN_START_FAILURES = {
    "v1": (
        (
            "No channels connected",
            "NanoClaw v1 exits at start when no messaging channel is installed and configured "
            "(a pristine checkout has none): install a channel with upstream's channel skills "
            "(e.g. /add-whatsapp, /add-telegram in Claude Code in the checkout), put its "
            "credentials in .env (nanoclaw_env_extra), and rerun",
        ),
    ),
    "v2": (),
}


_READ_ENV_FILE = re.compile(r"readEnvFile\(\s*\[([^\]]*)\]")


def dotenv_keys(sources: dict) -> list:
    """The .env keys a checkout reads: every ``readEnvFile([...])`` call of its ``src/`` (the
    reader ``src/env.ts`` itself and tests left out). ``sources`` maps path -> text."""
    keys = set()
    for path, text in sources.items():
        if not path.startswith("src/") or path == "src/env.ts" or ".test." in path:
            continue
        for call in _READ_ENV_FILE.findall(text):
            keys |= set(re.findall(r"['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]", call))
    return sorted(keys)


def install_slug(root: str) -> str:
    """v2's install slug: first 8 hex digits of sha1(physical project root)."""
    return hashlib.sha1(os.path.realpath(root).encode()).hexdigest()[:8]


def generation_of(version: str) -> str:
    """v1/v2 from package.json's version (major), '' when neither."""
    major = (version or "").split(".")[0]
    return "v" + major if major in ("1", "2") else ""


def conventions(generation: str, root: str, physical: bool = False) -> dict:
    """Everything the collection derives from upstream for one install.

    ``root`` is the project root; with ``physical`` it is taken as already resolved (the
    controller cannot resolve a path of the target)."""
    if generation not in GENERATIONS:
        raise ValueError(f"unknown NanoClaw generation {generation!r} (known: v1, v2)")
    resolved = root if physical else os.path.realpath(root)
    slug = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    if generation == "v1":
        unit = "nanoclaw.service"
        image = "nanoclaw-agent:latest"
        group_images = ""
    else:
        unit = f"nanoclaw-v2-{slug}.service"
        image = f"nanoclaw-agent-v2-{slug}:latest"
        # v2 builds one image per agent group from data/Dockerfile.<agentGroupId> (src/container-runner.ts).
        group_images = f"nanoclaw-agent-v2-{slug}"
    return {
        "generation": generation,
        "root": resolved,
        "slug": slug,
        "unit": unit,
        "image": image,
        "image_repository": image.rsplit(":", 1)[0],
        "group_image_repository": group_images,
        "container_label": f"nanoclaw-install={slug}" if generation == "v2" else "",
        "env_keys": list(ENV_KEYS[generation]),
        "service_env_keys": list(SERVICE_ENV_KEYS[generation]),
        "runtime_paths": list(RUNTIME_PATHS),
        "lockfile": "pnpm-lock.yaml" if generation == "v2" else "package-lock.json",
        "package_manager": "pnpm" if generation == "v2" else "npm",
        "concurrency_cap": CONCURRENCY_CAP[generation],
        "logs": {"out": resolved + "/logs/nanoclaw.log", "err": resolved + "/logs/nanoclaw.error.log"},
        "known_start_failures": [{"match": m, "explanation": e} for m, e in KNOWN_START_FAILURES[generation]],
    }
