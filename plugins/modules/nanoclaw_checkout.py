#!/usr/bin/python
# Copyright: nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nanoclaw_checkout
short_description: Check out NanoClaw at a pinned commit, keeping what the running host owns
version_added: 0.2.0
description:
  - Makes the NanoClaw project root at O(dest) a checkout of O(repo_url) with HEAD detached at
    O(version), cloning it when there is none. Run it as the service user (C(become_user)).
  - Upstream tracks files under C(groups/) and the running host changes them (v1 agents write
    their memory into C(groups/*/CLAUDE.md); v2's start-up migration renames and deletes them),
    so a real checkout is never clean once NanoClaw has run. Changes under O(runtime_paths) are
    user data and are carried over a commit change exactly as they were (content, mode, a
    deletion, a symlinked directory); they never count as local edits and are never reset,
    deleted or overwritten, also with O(force).
  - Refuses (nothing changed) a checkout with code edits (tracked files outside O(runtime_paths))
    or local commits on no remote branch, unless O(force), which discards the code edits only;
    refuses a directory that is not a git checkout and holds anything besides O(runtime_paths)
    (a root that holds only kept runtime data, as an uninstall leaves it, is checked out again).
  - Credentials in O(repo_url) never reach a command line or C(.git/config); the remote is
    stored without them and git receives them through its environment.
  - An interrupted run (set aside data under C(.git/nanoclaw-provision/)) is repaired first.
author:
  - nanoclaw.provision maintainers (@nanoclaw-provision)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
  - nanoclaw.provision.attributes.check_mode_no_diff
options:
  dest:
    description: The project root (its physical path).
    type: path
    required: true
  repo_url:
    description: Any git URL (https, ssh, file, git); credentials in it are kept out of argv and C(.git/config).
    type: str
    required: true
  version:
    description: The full 40-hex commit to check out.
    type: str
    required: true
  runtime_paths:
    description: Paths under O(dest) the running NanoClaw host owns.
    type: list
    elements: str
    default: [groups, data, store, logs, .env]
  force:
    description: Discard code edits (never runtime data) and check out even with local commits.
    type: bool
    default: false
  depth:
    description: Fetch only this many commits (V(0) = all).
    type: int
    default: 0
  reference:
    description: A local repository whose objects are borrowed (git alternates).
    type: path
  timeout:
    description: Seconds any single git command may take.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Check out NanoClaw v2.0.64, keeping what the running host wrote
  nanoclaw.provision.nanoclaw_checkout:
    dest: /home/nanoclaw/nanoclaw
    repo_url: https://github.com/qwibitai/nanoclaw.git
    version: 0683c6ec589ec0df74c2a3d99f9544127317b490
  become: true
  become_user: nanoclaw
"""

RETURN = r"""
before:
  description: HEAD before the run (empty when there was no checkout).
  returned: always
  type: str
after:
  description: HEAD after the run (the one a real run would have, in check mode).
  returned: always
  type: str
cloned:
  description: Whether the checkout was (or would be) created.
  returned: always
  type: bool
code_changes:
  description: Code edits found (C(git status) code and path), outside O(runtime_paths).
  returned: always
  type: list
  elements: str
runtime_changes:
  description: Changes of tracked files under O(runtime_paths) (user data, kept).
  returned: always
  type: list
  elements: str
  sample: ["D groups/global/CLAUDE.md", "D groups/main/CLAUDE.md"]
unpushed:
  description: Local commits on no remote branch.
  returned: always
  type: list
  elements: str
kept:
  description: Paths under O(runtime_paths) carried over a commit change as they were.
  returned: always
  type: list
  elements: str
repaired:
  description: Paths an interrupted earlier run had set aside and this run put back.
  returned: always
  type: list
  elements: str
package:
  description: C(name), C(version), C(packageManager) and C(engines) of the checkout's package.json.
  returned: always
  type: dict
  sample: {"name": "nanoclaw", "version": "2.0.64", "packageManager": "pnpm@10.33.0"}
dotenv_keys:
  description: >-
    The C(.env) keys the source at O(version) reads (every C(readEnvFile([...])) call of its
    C(src/), tests left out); empty when the commit is not there yet (check mode on a fresh host).
  returned: always
  type: list
  elements: str
  sample: [ANTHROPIC_BASE_URL, ASSISTANT_HAS_OWN_NUMBER, ASSISTANT_NAME, ONECLI_API_KEY, ONECLI_URL, TZ]
failure:
  description: >-
    On failure, what failed - V(dirty), V(not_a_checkout), V(unreachable), V(unknown_commit),
    V(timeout), V(git_error), V(bad_version).
  returned: failure
  type: str
error:
  description: >-
    With V(unreachable), git's own words without the URL (credentials redacted): the module hides
    every copy of O(repo_url) in its output, as it may carry credentials, so a caller names the URL
    itself (the nanoclaw role does, credentials redacted).
  returned: failure
  type: str
  sample: "fatal: unable to connect to 127.0.0.1: errno=Connection refused"
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nanoclaw.provision.plugins.module_utils._checkout import Checkout, CheckoutError
from ansible_collections.nanoclaw.provision.plugins.module_utils._upstream import dotenv_keys


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "repo_url": {"type": "str", "required": True, "no_log": True},
            "version": {"type": "str", "required": True},
            "runtime_paths": {"type": "list", "elements": "str", "default": ["groups", "data", "store", "logs", ".env"]},
            "force": {"type": "bool", "default": False},
            "depth": {"type": "int", "default": 0},
            "reference": {"type": "path"},
            "timeout": {"type": "int", "default": 600},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not re.fullmatch(r"[0-9a-f]{40}", p["version"]):
        module.fail_json(msg=f"version must be a full 40-character lowercase commit SHA, got {p['version']!r}", failure="bad_version")
    checkout = Checkout(p["dest"], p["runtime_paths"], timeout=p["timeout"])
    try:
        result = checkout.ensure(
            p["repo_url"], p["version"], force=p["force"], depth=p["depth"], reference=p["reference"] or "", check_mode=module.check_mode
        )
    except CheckoutError as exc:
        module.fail_json(msg=str(exc), failure=exc.failure, before=checkout.head(), **exc.details)
    # In check mode the pin's package.json is read from git when the commit is already there.
    result["package"] = checkout.package(p["version"] if module.check_mode else "")
    # What the checked-out source reads from .env (every readEnvFile([...]) of its src/).
    result["dotenv_keys"] = dotenv_keys(checkout.sources(p["version"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
