# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent contract as both smoke modules judge it: agent_smoke (through the container CLI) and
agent_smoke_job (as a Kubernetes Job) send the same v1 input, judge the same v1 outputs and read
the same v2 heartbeat, so what they report cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import Output

DEFAULT_INPUT = {
    "prompt": "Reply with the single word OK. (nanoclaw.provision smoke test)",
    "groupFolder": "smoke",
    "chatJid": "smoke@nanoclaw.provision.invalid",
    "isMain": False,
}
# What the v2 runner reads from container.json when the smoke writes it: the
# runner's built-in mock provider answers without credentials or network.
DEFAULT_V2_CONFIG = {"provider": "mock", "assistantName": "Smoke", "groupName": "smoke", "agentGroupId": "smoke"}
TAIL_LINES = 20


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def seconds(value: float | None) -> float | None:
    """A duration as the results give it: seconds to the millisecond, or None when it was never reached."""
    return None if value is None else round(value, 3)


def payload(given: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 JSON input: ``given`` over the defaults, the secrets (when any) in its ``secrets`` key."""
    merged = dict(DEFAULT_INPUT)
    merged.update(given)
    if secrets:
        merged["secrets"] = dict(secrets)
    return merged


def is_session_update(output: Output) -> bool:
    """The output a v1 runner writes after each query: success without a result (index.ts, writeOutput after runQuery)."""
    return output.valid and output.value.get("status") == "success" and output.value.get("result") is None


def judge_v1(outputs: list[Output], rc: int | None, several: str) -> tuple[str | None, str, dict]:  # noqa: PLR0911 - one return per failure kind
    """(failure, message, extra result keys) from the parsed outputs and exit code.

    The result is the last output that carries one; session updates (success with a null result)
    only count as the result when the agent wrote nothing else.
    """
    extra: dict = {"outputs_count": len(outputs)}
    if not outputs:
        return "no_markers", "the agent wrote no output between ---NANOCLAW_OUTPUT_START--- and ---NANOCLAW_OUTPUT_END---", extra
    results = [o for o in outputs if not is_session_update(o)]
    last = (results or outputs)[-1]
    if not last.valid:
        return "invalid_json", f"the agent's output is not a JSON object: {last.error}", extra
    extra["output"] = last.value
    if len(results) > 1 and several == "fail":
        return "several_outputs", f"the agent wrote {len(results)} outputs and several_outputs=fail", extra
    if last.value.get("status") != "success":
        error = str(last.value.get("error") or "")
        extra["agent_error"] = error
        return "status_error", f"the agent answered status={last.value.get('status')!r}: {error or '(no error given)'}", extra
    if rc != 0:
        return "exit_code", f"the agent wrote a success output but exited with code {rc}", extra
    updates = len(outputs) - len(results)
    detail = f"{len(outputs)} outputs" + (f", {updates} of them session updates" if updates else "")
    if len(results) > 1:
        return None, f"the agent honoured the v1 contract ({detail}; the last one is the result)", extra
    return None, f"the agent honoured the v1 contract ({detail})", extra


def heartbeat_after(path: str, since: float) -> bool:
    """Whether the v2 runner touched its heartbeat file at ``path`` at or after ``since`` (epoch seconds)."""
    try:
        return os.stat(path).st_mtime >= since
    except OSError:
        return False
