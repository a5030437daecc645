#!/usr/bin/python
# Copyright: nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mount_allowlist
short_description: Write NanoClaw's mount allowlist after validating it with NanoClaw's rules
version_added: 0.1.0
description:
  - Writes C(~/.config/nanoclaw/mount-allowlist.json) of the user the module runs as (use
    C(become_user) with the NanoClaw service user), the file NanoClaw reads to decide which host
    directories may be mounted into agent containers. Without the file NanoClaw refuses every
    additional mount.
  - Validates every entry first with NanoClaw's rules, so a bad entry fails at provision time
    instead of being refused silently at run time. Host paths are C(~)-expanded and resolved with
    realpath (symlinks followed); a root that matches a blocked pattern (the built-in list
    C(.ssh .gnupg .gpg .aws .azure .gcloud .kube .docker credentials .env .netrc .npmrc .pypirc
    id_rsa id_ed25519 private_key .secret) merged with O(blocked_patterns), substring match on any
    path component) is refused, before or after following symlinks; a root must exist unless its
    O(allowed_roots[].create) is set.
  - Optionally validates planned additional mounts (O(mounts)) against the resulting allowlist.
    Container paths must be relative, non-empty, without C(..) or a colon; host paths must exist,
    lie under an allowed root and under no blocked pattern.
  - Writes the file only when its content or mode differs (mode C(0600)), with a diff.
    Nothing is written or created when any entry is refused.
author:
  - nanoclaw.provision maintainers (@nanoclaw-provision)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
  platform:
    platforms: posix
options:
  path:
    description:
      - Where to write the allowlist. C(~) is the home of the user the module runs as.
    type: path
    default: ~/.config/nanoclaw/mount-allowlist.json
  allowed_roots:
    description:
      - Host directories under which additional mounts are allowed.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description:
          - Absolute path or a path starting with C(~/). Written to the file as its realpath.
        type: str
        required: true
      allow_read_write:
        description:
          - Whether mounts under this root may be read-write.
        type: bool
        default: false
      description:
        description:
          - Free text written next to the root.
        type: str
      create:
        description:
          - Create the directory (mode C(0750), owned by the user the module runs as) when it does
            not exist, instead of failing.
        type: bool
        default: false
  blocked_patterns:
    description:
      - Extra blocked patterns, written to the file's C(blockedPatterns); NanoClaw merges them
        with its built-in list.
    type: list
    elements: str
    default: []
  non_main_read_only:
    description:
      - NanoClaw's C(nonMainReadOnly), required by NanoClaw v1 and ignored by v2. When true, mounts
        of non-main groups are read-only.
    type: bool
    default: true
  project_root:
    description:
      - The NanoClaw project root. A root that contains it or lies inside it is refused (its code
        and C(.env) must not be mountable into agents), as is a root that is or contains the home
        or overlaps C(~/.config).
    type: path
  mounts:
    description:
      - Planned additional mounts to validate against the allowlist (not written anywhere).
    type: list
    elements: dict
    default: []
    suboptions:
      host_path:
        description:
          - Host path of the mount.
        type: str
        required: true
      container_path:
        description:
          - Path inside the container, relative to C(/workspace/extra/).
        type: str
        required: true
      read_write:
        description:
          - Whether the mount is requested read-write (it is read-only under a read-only root).
        type: bool
        default: false
seealso:
  - name: NanoClaw
    description: The project whose mount allowlist this module writes.
    link: https://github.com/qwibitai/nanoclaw
"""

EXAMPLES = r"""
- name: Allow ~/projects read-write and a shared documents folder read-only
  nanoclaw.provision.mount_allowlist:
    allowed_roots:
      - path: ~/projects
        allow_read_write: true
        description: Code the agents work on
        create: true
      - path: /srv/shared/docs
    blocked_patterns:
      - .vault
    non_main_read_only: true
    mounts:
      - host_path: ~/projects/website
        container_path: website
        read_write: true
  become: true
  become_user: nanoclaw

- name: Refuse every additional mount (an empty allowlist)
  nanoclaw.provision.mount_allowlist:
    allowed_roots: []
  become: true
  become_user: nanoclaw
"""

RETURN = r"""
path:
  description: Absolute path of the allowlist file.
  returned: always
  type: str
  sample: /home/nanoclaw/.config/nanoclaw/mount-allowlist.json
allowlist:
  description: The document written (or that would be written in check mode).
  returned: always
  type: dict
  sample:
    allowedRoots:
      - path: /home/nanoclaw/projects
        allowReadWrite: true
        description: Code the agents work on
    blockedPatterns: [".vault"]
    nonMainReadOnly: true
effective_blocked_patterns:
  description: The built-in blocked patterns merged with O(blocked_patterns), as NanoClaw applies them.
  returned: always
  type: list
  elements: str
  sample: [".ssh", ".gnupg", ".vault"]
created_roots:
  description: Roots created because of O(allowed_roots[].create) (or that would be in check mode).
  returned: always
  type: list
  elements: str
  sample: [/home/nanoclaw/projects]
mounts:
  description: The validated O(mounts), host paths resolved, with the effective read-write flag.
  returned: always
  type: list
  elements: dict
  sample:
    - host_path: /home/nanoclaw/projects/website
      container_path: website
      read_write: true
"""

import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nanoclaw.provision.plugins.module_utils._allowlist import (
    AllowlistError,
    build_document,
    check_mount,
    merged_patterns,
    render,
    resolve_root,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "~/.config/nanoclaw/mount-allowlist.json"},
            "allowed_roots": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "str", "required": True},
                    "allow_read_write": {"type": "bool", "default": False},
                    "description": {"type": "str"},
                    "create": {"type": "bool", "default": False},
                },
            },
            "blocked_patterns": {"type": "list", "elements": "str", "default": []},
            "non_main_read_only": {"type": "bool", "default": True},
            "project_root": {"type": "path"},
            "mounts": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "host_path": {"type": "str", "required": True},
                    "container_path": {"type": "str", "required": True},
                    "read_write": {"type": "bool", "default": False},
                },
            },
        },
        supports_check_mode=True,
    )
    params = module.params
    # NanoClaw expands ~ to the home of the user running it: the user this module runs as.
    home = pwd.getpwuid(os.getuid()).pw_dir
    dest = os.path.abspath(params["path"])
    patterns = merged_patterns(params["blocked_patterns"])

    roots = []
    to_create = []
    try:
        for index, entry in enumerate(params["allowed_roots"]):
            real, exists = resolve_root(entry, index, home, patterns, project_root=params["project_root"])
            if not exists:
                to_create.append(real)
            roots.append(dict(entry, realpath=real))
        document = build_document(roots, params["blocked_patterns"], params["non_main_read_only"])
        # Planned mounts under roots still to be created cannot exist yet: validate the rest.
        mounts = []
        for index, mount in enumerate(params["mounts"]):
            mounts.append(check_mount(mount, index, document, home, patterns))
    except AllowlistError as exc:
        module.fail_json(msg=str(exc))

    content = render(document)
    before = ""
    mode_ok = False
    if os.path.exists(dest):
        with open(dest, encoding="utf-8") as handle:
            before = handle.read()
        mode_ok = (os.stat(dest).st_mode & 0o7777) == 0o600
    changed = bool(to_create) or before != content or not mode_ok

    if changed and not module.check_mode:
        for directory in to_create:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        if before != content:
            fd, tmp = tempfile.mkstemp(prefix=".mount-allowlist.", dir=os.path.dirname(dest))
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(content)
                os.chmod(tmp, 0o600)
                module.atomic_move(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        os.chmod(dest, 0o600)

    result = {
        "changed": changed,
        "path": dest,
        "allowlist": document,
        "effective_blocked_patterns": patterns,
        "created_roots": to_create,
        "mounts": mounts,
    }
    if module._diff:
        result["diff"] = {"before": before, "after": content, "before_header": dest, "after_header": dest}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
