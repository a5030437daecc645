# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NanoClaw's conventions for one install (plugins/module_utils/_upstream.py), for roles and playbooks."""

from __future__ import annotations

DOCUMENTATION = r"""
name: nanoclaw_conventions
author: nanoclaw.provision maintainers (@nanoclaw)
version_added: 0.2.0
short_description: NanoClaw's names, paths and keys for one install of a generation
description:
  - Returns what upstream NanoClaw derives for a checkout at O(root) of generation O(_input) -
    C(slug), C(unit), C(image), C(image_repository), C(group_image_repository) (v2's per-agent-group
    images, tagged with the agent group id), C(container_label), C(env_keys) (the C(.env) keys that
    generation reads), C(service_env_keys) (what it reads from its process environment only),
    C(runtime_paths) (what the running host owns under the root), C(lockfile), C(package_manager),
    C(concurrency_cap), C(logs) and C(known_start_failures).
  - The one place these are kept is C(plugins/module_utils/_upstream.py); the unit tests check it
    against upstream's source at both known-good pins.
  - The companion filter P(nanoclaw.provision.nanoclaw_upstream#filter) returns the facts that do not
    depend on the generation.
options:
  _input:
    description: The generation, V(v1) or V(v2).
    type: string
    required: true
  root:
    description: The project root as the target resolves it (its physical path); it is not resolved again.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Name the unit of a v2 install
  ansible.builtin.debug:
    msg: "{{ ('v2' | nanoclaw.provision.nanoclaw_conventions(root='/home/nanoclaw/nanoclaw')).unit }}"
"""

RETURN = r"""
_value:
  description: The conventions (see the description for the keys).
  type: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.nanoclaw.provision.plugins.module_utils import _upstream  # noqa: E402


def nanoclaw_conventions(generation: str, root: str) -> dict:
    try:
        return _upstream.conventions(str(generation), str(root), physical=True)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """nanoclaw.provision NanoClaw convention filters."""

    def filters(self):
        return {"nanoclaw_conventions": nanoclaw_conventions}
