# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan subordinate id ranges (/etc/subuid, /etc/subgid) for a rootless container user."""

from __future__ import annotations

DOCUMENTATION = r"""
name: subid_plan
author: nanoclaw.provision maintainers (@nanoclaw)
version_added: 0.1.0
short_description: Plan a user's subordinate uid or gid range
description:
  - Parses the content of C(/etc/subuid) or C(/etc/subgid) and decides what the user's range is or must be.
  - Returns a dictionary with C(action) (V(keep), V(add), V(replace) or V(missing)), C(start), C(count),
    C(line) (the line to write), C(entries) (every parsed entry) and C(problems) (a list of messages,
    each naming the variable or file that causes it).
  - A new range starts after the highest range any other user holds, and never below O(minimum).
options:
  _input:
    description: Content of C(/etc/subuid) or C(/etc/subgid) (empty when the file does not exist).
    type: string
    required: true
  user:
    description: Name of the user the range is for.
    type: string
    required: true
  uid:
    description: Numeric id of the user, when known (entries may name the user by number).
    type: string
  count:
    description: Size of the range the user needs.
    type: int
    default: 65536
  start:
    description: First id of the range, V(0) for the next free range.
    type: int
    default: 0
  minimum:
    description: Lowest first id of an allocated range.
    type: int
    default: 100000
  allocate:
    description: Allocate a missing range; when V(false) a missing range is a problem.
    type: bool
    default: true
  replace:
    description: Replace the user's existing range when O(start) asks for a different one.
    type: bool
    default: false
  kind:
    description: V(subuid) or V(subgid), used in messages.
    type: string
    default: subuid
  start_var:
    description: Name of the variable that sets O(start), used in messages.
    type: string
    default: start
  count_var:
    description: Name of the variable that sets O(count), used in messages.
    type: string
    default: count
"""

EXAMPLES = r"""
plan: "{{ lookup('file', '/etc/subuid') | nanoclaw.provision.subid_plan(user='nanoclaw', count=65536) }}"
"""

RETURN = r"""
_value:
  description: The plan, see the description.
  type: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402


def parse_subid(content: str) -> list[dict]:
    """Entries of a subid file as dicts (name, start, count, end); malformed lines are reported."""
    entries = []
    for number, raw in enumerate((content or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise AnsibleFilterError(f"line {number} is not NAME:START:COUNT: {line!r}")
        start, count = int(parts[1]), int(parts[2])
        entries.append({"name": parts[0], "start": start, "count": count, "end": start + count})
    return entries


def _overlaps(start: int, count: int, entry: dict) -> bool:
    return start < entry["end"] and entry["start"] < start + count


def subid_plan(
    content,
    user,
    *,
    uid=None,
    count=65536,
    start=0,
    minimum=100000,
    allocate=True,
    replace=False,
    kind="subuid",
    start_var="start",
    count_var="count",
):
    """See DOCUMENTATION."""
    count, start, minimum = int(count), int(start or 0), int(minimum)
    if count < 1:
        raise AnsibleFilterError(f"{count_var} must be at least 1, got {count}")
    names = {str(user)} | ({str(uid)} if uid not in (None, "") else set())
    entries = parse_subid(content)
    own = [e for e in entries if e["name"] in names]
    others = [e for e in entries if e["name"] not in names]
    path = f"/etc/{kind}"
    problems: list[str] = []

    def clashes(first: int) -> list[dict]:
        return [o for o in others if _overlaps(first, count, o)]

    def describe(entries_: list[dict]) -> str:
        return ", ".join(f"{o['name']} ({o['start']}-{o['end'] - 1})" for o in entries_)

    if own:
        current = own[0]
        action, first, size = "keep", current["start"], current["count"]
        if start and start != current["start"]:
            if replace:
                action, first, size = "replace", start, count
            else:
                problems.append(
                    f"{user} already has the {kind} range {current['start']}-{current['end'] - 1} in {path}, "
                    f"but {start_var} asks for {start}: changing it would orphan the files in the user's "
                    f"container storage (remove the line by hand, or unset {start_var})"
                )
        if action == "keep" and current["count"] < count:
            problems.append(
                f"{user} has only {current['count']} {kind} ids in {path} ({current['start']}-"
                f"{current['end'] - 1}), {count_var} asks for {count}"
            )
        clash = [o for o in others if _overlaps(first, size, o)]
        if clash:
            problems.append(
                f"the {kind} range of {user} ({first}-{first + size - 1}) overlaps {describe(clash)} in {path}"
                + (f" ({start_var})" if action != "keep" else "")
            )
    elif not allocate:
        action, first, size = "missing", 0, count
        problems.append(f"{user} has no {kind} range in {path} and allocation is off (verify-only mode)")
    else:
        action, size = "add", count
        if start:
            first = start
            clash = clashes(first)
            if clash:
                problems.append(
                    f"{start_var}={start} gives {user} the {kind} range {start}-{start + count - 1}, "
                    f"which overlaps {describe(clash)} in {path}"
                )
        else:
            first = max([minimum] + [o["end"] for o in others])
    return {
        "action": action,
        "start": first,
        "count": size,
        "line": f"{user}:{first}:{size}",
        "entries": entries,
        "problems": problems,
    }


class FilterModule:
    """nanoclaw.provision subordinate id filters."""

    def filters(self):
        return {"subid_plan": subid_plan}
