# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the kubernetes role does to a warm pool: which warm Jobs go, how many to start per group."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: warm_pool_plan
author: nanoclaw.provision maintainers (@nanoclaw)
version_added: 0.1.0
short_description: Which warm agent Jobs to remove and which groups need new ones
description:
  - Takes the warm pool's Jobs as C(kubernetes.core.k8s_info) lists them (label C(nanoclaw.dev/warm)
    holding the group; the claimed ones, labelled C(nanoclaw.dev/claimed), are a session's and are
    left out by the caller's selector) and returns C(remove) - the names of finished Jobs (a
    C(Complete) or C(Failed) condition), Jobs of groups no longer listed and the youngest Jobs
    beyond O(size) in a group - and C(create) - one group name per Job to start.
options:
  _input:
    description: The Jobs (C(resources) of C(kubernetes.core.k8s_info)).
    type: list
    elements: dict
    required: true
  groups:
    description: The groups that have a pool.
    type: list
    elements: string
    required: true
  size:
    description: Warm Jobs wanted per group.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Plan the warm pool
  ansible.builtin.set_fact:
    plan: "{{ found.resources | nanoclaw.provision.warm_pool_plan(groups=['main'], size=2) }}"
"""

RETURN = r"""
_value:
  description: C(remove) (Job names) and C(create) (a group name per Job to start).
  type: dict
"""

WARM_LABEL = "nanoclaw.dev/warm"
CLAIMED_LABEL = "nanoclaw.dev/claimed"


def _finished(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def warm_pool_plan(jobs: list[dict[str, Any]], groups: list[str], size: int) -> dict[str, list[str]]:
    remove: list[str] = []
    live: dict[str, list[tuple[str, str]]] = {str(g): [] for g in groups}
    for job in jobs:
        meta = job.get("metadata") or {}
        labels = meta.get("labels") or {}
        if CLAIMED_LABEL in labels or meta.get("deletionTimestamp"):
            continue
        group = labels.get(WARM_LABEL)
        if _finished(job) or group not in live:
            remove.append(meta["name"])
        else:
            live[group].append((meta.get("creationTimestamp") or "", meta["name"]))
    create: list[str] = []
    for group, members in live.items():
        members.sort()
        remove.extend(name for _created, name in members[max(size, 0) :])
        create.extend([group] * max(size - len(members), 0))
    return {"remove": sorted(remove), "create": create}


class FilterModule:
    def filters(self):
        return {"warm_pool_plan": warm_pool_plan}
