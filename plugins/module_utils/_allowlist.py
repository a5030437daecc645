# Copyright: nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NanoClaw mount allowlist rules, as plain functions (no Ansible imports).

The rules are NanoClaw's (both generations): the allowlist lives at
~/.config/nanoclaw/mount-allowlist.json of the user running the host process; host paths are
~-expanded and resolved with realpath (symlinks followed); a path is refused when any of its
components contains a blocked pattern (the built-in list merged with the file's own); a mount
must lie under the realpath of an allowed root and is read-write only if the root allows it;
container paths are relative, non-empty, without ``..`` (anywhere, as upstream's
``includes('..')``) or ``:``.

Stricter than NanoClaw, because a root that defeats the allowlist is never what anyone wants:
a root that is or contains the home, that is, contains or lies inside the project root or
``~/.config`` is refused (a read-write mount of any of them reaches ``~/.ssh``, the allowlist
itself, ``.env`` or ``~/.config/systemd/user``, which runs code on the host), and ``:`` in a host
path is refused (the docker CLI's ``-v host:container`` would split it).
"""

from __future__ import annotations

import json
import os

# NanoClaw's built-in blocked patterns, always merged with the file's blockedPatterns.
BUILTIN_BLOCKED_PATTERNS = (
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    "credentials",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ed25519",
    "private_key",
    ".secret",
)


class AllowlistError(ValueError):
    """An entry NanoClaw would refuse; the message names the offending option."""


def expand_home(path, home):
    """Expand a leading ~ the way NanoClaw does (to the home of the user running the host)."""
    if path == "~":
        return home
    if path.startswith("~/"):
        return os.path.join(home, path[2:])
    return path


def merged_patterns(extra):
    """Built-in patterns first, then the user's, without duplicates or empty strings."""
    out = []
    for pattern in list(BUILTIN_BLOCKED_PATTERNS) + list(extra or []):
        if pattern and pattern not in out:
            out.append(pattern)
    return out


def blocked_by(path, patterns):
    """Return the first pattern contained in any component of ``path``, or None."""
    parts = [p for p in path.split("/") if p]
    for pattern in patterns:
        for part in parts:
            if pattern in part:
                return pattern
    return None


def check_container_path(container_path, label):
    """Raise AllowlistError unless ``container_path`` is relative, non-empty, without .. or :."""
    if not isinstance(container_path, str) or not container_path.strip():
        raise AllowlistError(f"{label}: the container path is empty")
    if container_path.startswith("/"):
        raise AllowlistError(f"{label}: container path '{container_path}' must be relative (it is mounted under /workspace/extra/)")
    if ":" in container_path:
        raise AllowlistError(f"{label}: container path '{container_path}' must not contain ':'")
    # Anywhere, not only as a path component: upstream's check is includes('..').
    if ".." in container_path:
        raise AllowlistError(f"{label}: container path '{container_path}' must not contain '..'")


def _contains(outer, inner):
    """Whether the absolute path ``inner`` is ``outer`` or lies below it."""
    outer = outer.rstrip("/") or "/"
    return outer in (inner, "/") or inner.startswith(outer + "/")


def check_root_scope(raw, real, label, home, project_root=None):
    """Raise AllowlistError when a root is or contains the home, or overlaps the project root or ~/.config.

    ``home`` and ``project_root`` are compared by realpath, as the root is.
    """
    home_real = os.path.realpath(home)
    via = f" (it resolves to '{real}')" if real != raw else ""
    if _contains(real, home_real):
        raise AllowlistError(
            f"{label}: '{raw}'{via} is or contains the home {home_real}: a mount of it would reach ~/.ssh, "
            "~/.config and the allowlist itself; allow a directory inside the home instead"
        )
    protected = [(os.path.join(home_real, ".config"), "~/.config (the allowlist, systemd user units)")]
    if project_root:
        protected.append((os.path.realpath(project_root), "the NanoClaw project root (its code and .env)"))
    for path, what in protected:
        if _contains(real, path) or _contains(path, real):
            raise AllowlistError(f"{label}: '{raw}'{via} overlaps {path}, {what}: refused")


def check_host_path_chars(raw, label):
    """Raise AllowlistError when a host path contains ':' (docker's -v separator)."""
    if ":" in raw:
        raise AllowlistError(f"{label}: '{raw}' must not contain ':' (docker -v host:container would split it)")


def resolve_root(entry, index, home, patterns, *, may_be_missing=False, project_root=None):
    """Resolve one allowed root; return (realpath, exists). Raise AllowlistError when refused."""
    label = f"allowed_roots[{index}].path"
    raw = entry.get("path")
    if not isinstance(raw, str) or not raw.strip():
        raise AllowlistError(f"{label}: a root needs a non-empty path")
    check_host_path_chars(raw, label)
    expanded = expand_home(raw, home)
    if not os.path.isabs(expanded):
        raise AllowlistError(f"{label}: '{raw}' must be absolute or start with ~/")
    real = os.path.realpath(expanded)
    check_host_path_chars(real, label)
    check_root_scope(raw, real, label, home, project_root)
    pattern = blocked_by(expanded, patterns) or blocked_by(real, patterns)
    if pattern:
        via = f" (it resolves to '{real}')" if real != expanded else ""
        raise AllowlistError(f"{label}: '{raw}'{via} matches the blocked pattern '{pattern}'")
    exists = os.path.exists(real)
    if exists and not os.path.isdir(real):
        raise AllowlistError(f"{label}: '{raw}' resolves to '{real}', which is not a directory")
    if not exists and not (entry.get("create") or may_be_missing):
        raise AllowlistError(f"{label}: '{raw}' does not exist (set create: true on the root to create it)")
    return real, exists


def build_document(roots, extra_patterns, non_main_read_only):
    """The JSON document NanoClaw reads: resolved roots, the user's patterns, nonMainReadOnly."""
    allowed = []
    for root in roots:
        item = {"path": root["realpath"], "allowReadWrite": bool(root.get("allow_read_write"))}
        if root.get("description"):
            item["description"] = root["description"]
        allowed.append(item)
    return {
        "allowedRoots": allowed,
        "blockedPatterns": [p for p in (extra_patterns or []) if p],
        "nonMainReadOnly": bool(non_main_read_only),
    }


def render(document):
    return json.dumps(document, indent=2) + "\n"


def check_mount(mount, index, document, home, patterns):
    """Validate one planned additional mount like NanoClaw does; return the effective mount."""
    label = f"mounts[{index}]"
    check_container_path(mount.get("container_path"), f"{label}.container_path")
    raw = mount.get("host_path")
    if not isinstance(raw, str) or not raw.strip():
        raise AllowlistError(f"{label}.host_path: a mount needs a host path")
    check_host_path_chars(raw, f"{label}.host_path")
    expanded = expand_home(raw, home)
    if not os.path.isabs(expanded):
        raise AllowlistError(f"{label}.host_path: '{raw}' must be absolute or start with ~/")
    if not os.path.exists(expanded):
        raise AllowlistError(f"{label}.host_path: '{raw}' does not exist")
    real = os.path.realpath(expanded)
    check_host_path_chars(real, f"{label}.host_path")
    pattern = blocked_by(real, patterns)
    if pattern:
        raise AllowlistError(f"{label}.host_path: '{raw}' resolves to '{real}', which matches the blocked pattern '{pattern}'")
    for root in document["allowedRoots"]:
        base = root["path"].rstrip("/") or "/"
        if real == base or real.startswith(base + "/") or base == "/":
            # Like NanoClaw: a read-write request under a read-only root is mounted read-only.
            read_write = bool(mount.get("read_write")) and root["allowReadWrite"]
            return {"host_path": real, "container_path": mount["container_path"], "read_write": read_write}
    raise AllowlistError(f"{label}.host_path: '{raw}' (realpath '{real}') is under no allowed root")
