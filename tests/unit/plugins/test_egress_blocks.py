"""egress_blocks: the kubernetes role's egress CIDR checks and NetworkPolicy ipBlocks (issue 16.10)."""

from __future__ import annotations

import pytest

from ansible_collections.nanoclaw.provision.plugins.filter.egress_blocks import egress_blocks

META = ["169.254.169.254/32"]


def test_plain_cidrs_become_blocks_without_except():
    assert egress_blocks(["192.0.2.0/24", "2001:db8::/32"], META) == {
        "blocks": [{"cidr": "192.0.2.0/24"}, {"cidr": "2001:db8::/32"}],
        "problems": [],
    }


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "169.254.0.0/16", "169.254.169.254/32"[:-3] + "/31"])
def test_a_cidr_holding_the_metadata_address_gets_it_excepted(cidr):
    result = egress_blocks([cidr], META)
    assert result["problems"] == []
    assert result["blocks"][0]["except"] == ["169.254.169.254/32"]


def test_a_cidr_holding_the_metadata_address_without_the_exception_is_refused():
    result = egress_blocks(["0.0.0.0/0"], [], variable="v_cidrs", excluded_variable="v_except")
    assert result["problems"] == [
        "0.0.0.0/0 in v_cidrs includes the cloud metadata address 169.254.169.254, where agents could read the "
        "node's credentials: keep 169.254.169.254/32 in v_except"
    ]


@pytest.mark.parametrize("bad", ["999.1.1.1/99", "10.0.0.0", "10.0.0.0/33", "example.com/8", "", "fe80::/129"])
def test_malformed_cidrs_are_refused_naming_the_variable(bad):
    result = egress_blocks([bad], META, variable="nanoclaw_kubernetes_egress_cidrs")
    assert len(result["problems"]) == 1
    assert result["problems"][0].startswith(f'malformed CIDR "{bad}" in nanoclaw_kubernetes_egress_cidrs')


def test_the_metadata_address_itself_as_a_whole_cidr_cannot_be_excepted_away():
    # An ipBlock cannot except itself: a /32 of the metadata address is refused.
    result = egress_blocks(["169.254.169.254/32"], META)
    assert result["problems"], result
