# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check egress CIDRs of the kubernetes role and turn them into NetworkPolicy ipBlocks."""

from __future__ import annotations

DOCUMENTATION = r"""
name: egress_blocks
author: nanoclaw.provision maintainers (@nanoclaw)
version_added: 0.1.0
short_description: Check egress CIDRs and build NetworkPolicy ipBlocks that keep out the metadata address
description:
  - Parses each CIDR with Python's C(ipaddress) (so C(999.1.1.1/99) or C(10.0.0.0) is refused, not
    passed to the API server) and returns C(blocks), a list of C({cidr, except}) ipBlocks, and
    C(problems), a list of messages naming O(variable).
  - Every block that contains one of O(excluded) (the cloud metadata address 169.254.169.254 by
    default) gets it in its C(except) list; a CIDR that contains it while O(excluded) is empty of it
    is a problem, because agents could then read the node's cloud credentials.
options:
  _input:
    description: The CIDRs (strings).
    type: list
    elements: string
    required: true
  excluded:
    description: Addresses or CIDRs to keep out of every block that contains them.
    type: list
    elements: string
    default: []
  protected:
    description: Addresses that no block may contain unless O(excluded) covers them.
    type: list
    elements: string
    default: [169.254.169.254]
  variable:
    description: Name of the variable the CIDRs come from, used in messages.
    type: string
    default: cidrs
  excluded_variable:
    description: Name of the variable O(excluded) comes from, used in messages.
    type: string
    default: excluded
"""

EXAMPLES = r"""
policy: "{{ ['0.0.0.0/0'] | nanoclaw.provision.egress_blocks(excluded=['169.254.169.254/32']) }}"
"""

RETURN = r"""
_value:
  description: C(blocks) (list of dicts with C(cidr) and, when needed, C(except)) and C(problems) (list of strings).
  type: dict
"""

import ipaddress  # noqa: E402


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if "/" not in text:
        raise ValueError("no /prefix")
    return ipaddress.ip_network(text, strict=False)


def egress_blocks(
    cidrs: list,
    excluded: list | None = None,
    protected: list | None = None,
    variable: str = "cidrs",
    excluded_variable: str = "excluded",
) -> dict:
    problems: list[str] = []
    blocks: list[dict] = []
    exclusions = []
    for item in excluded or []:
        try:
            exclusions.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError as exc:
            problems.append(f'malformed address or CIDR "{item}" in {excluded_variable}: {exc}')
    guarded = [ipaddress.ip_address(str(a)) for a in (protected if protected is not None else ["169.254.169.254"])]
    for item in cidrs or []:
        text = str(item).strip()
        try:
            net = _network(text)
        except ValueError as exc:
            problems.append(f'malformed CIDR "{text}" in {variable}: use address/prefix such as 10.0.0.0/8 ({exc})')
            continue
        inside = [e for e in exclusions if e.version == net.version and e.subnet_of(net) and e != net]
        block = {"cidr": str(net)}
        if inside:
            block["except"] = [str(e) for e in inside]
        for address in guarded:
            if address.version == net.version and address in net and not any(address in e for e in inside):
                problems.append(
                    f"{text} in {variable} includes the cloud metadata address {address}, where agents could read the "
                    f"node's credentials: keep {address}/32 in {excluded_variable}"
                )
        blocks.append(block)
    return {"blocks": blocks, "problems": problems}


class FilterModule:
    """nanoclaw.provision network policy filters."""

    def filters(self):
        return {"egress_blocks": egress_blocks}
