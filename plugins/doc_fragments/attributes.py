# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attribute text shared by the collection's modules (each module gives only its support and details)."""

from __future__ import annotations


class ModuleDocFragment:
    # With ansible.builtin.action_common_attributes (check_mode, diff_mode, platform): the one
    # attribute it does not describe.
    DOCUMENTATION = r"""
attributes:
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation
        indicates no change.
"""

    # The support most modules of the collection have: full check mode, no diff, idempotent, POSIX.
    CHECK_MODE_NO_DIFF = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
  platform:
    platforms: posix
"""
