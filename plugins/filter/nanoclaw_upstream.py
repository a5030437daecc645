# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NanoClaw's generation-independent facts (plugins/module_utils/_upstream.py), by name."""

from __future__ import annotations

DOCUMENTATION = r"""
name: nanoclaw_upstream
author: nanoclaw.provision maintainers (@nanoclaw)
version_added: 0.2.0
short_description: One of NanoClaw's facts that do not depend on the generation
description:
  - V(runtime_paths) - what the running host owns under the project root (never reset, deleted or
    overwritten without a purge); V(known_pins) - upstream's known-good commits and their
    generation; V(env_keys) - per generation, the C(.env) keys upstream reads.
  - Kept in C(plugins/module_utils/_upstream.py), checked against upstream's source by the unit tests.
options:
  _input:
    description: V(runtime_paths), V(known_pins) or V(env_keys).
    type: string
    required: true
"""

EXAMPLES = r"""
- name: List what NanoClaw owns in its project root
  ansible.builtin.debug:
    msg: "{{ 'runtime_paths' | nanoclaw.provision.nanoclaw_upstream }}"
"""

RETURN = r"""
_value:
  description: The fact (a list or a dictionary).
  type: raw
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.nanoclaw.provision.plugins.module_utils import _upstream  # noqa: E402

_FACTS = {
    "runtime_paths": lambda: list(_upstream.RUNTIME_PATHS),
    "known_pins": lambda: dict(_upstream.KNOWN_PINS),
    "env_keys": lambda: {g: list(k) for g, k in _upstream.ENV_KEYS.items()},
}


def nanoclaw_upstream(name: str):
    if name not in _FACTS:
        raise AnsibleFilterError("nanoclaw_upstream: unknown name {!r} (known: {})".format(name, ", ".join(sorted(_FACTS))))
    return _FACTS[name]()


class FilterModule:
    """nanoclaw.provision generation-independent NanoClaw facts."""

    def filters(self):
        return {"nanoclaw_upstream": nanoclaw_upstream}
