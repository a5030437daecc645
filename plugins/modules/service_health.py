#!/usr/bin/python
# Copyright: nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_health
short_description: Tell whether the NanoClaw service stays up, with upstream's own reason when not
version_added: 0.2.0
description:
  - Reads the systemd unit O(unit) (user scope as the user the module runs as, or system scope) and
    decides whether it is up and staying up - C(active)/C(running), its main process up for at
    least O(window) seconds without a restart in between. A unit that started less than O(window)
    seconds ago is watched until it has been up that long (or restarts, or fails); a unit that has
    been up longer is healthy at once, so a rerun pays nothing. A unit waiting to be restarted
    (C(activating/auto-restart)) is not healthy at once, since its main process has exited already.
  - When it is not healthy, returns the last O(lines) lines of upstream's own logs (O(log_files))
    and, when one of O(known_failures) matches them, upstream's reason and what to do.
  - Only reads; never starts, stops or changes anything.
author:
  - nanoclaw.provision maintainers (@nanoclaw-provision)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
  - nanoclaw.provision.attributes.check_mode_no_diff
options:
  unit:
    description: The unit name, e.g. C(nanoclaw-v2-1a2b3c4d.service).
    type: str
    required: true
  scope:
    description: V(user) (the manager of the user the module runs as) or V(system).
    type: str
    choices: [user, system]
    default: user
  window:
    description: Seconds the main process must stay up without a restart.
    type: int
    default: 10
  log_files:
    description: Logs to quote when the unit is not healthy (missing ones are skipped).
    type: list
    elements: path
    default: []
  lines:
    description: How many last lines of each log to return.
    type: int
    default: 20
  known_failures:
    description: Start failures upstream reports in its logs, each a C(match) substring and an C(explanation).
    type: list
    elements: dict
    default: []
    suboptions:
      match:
        description: Substring of a log line.
        type: str
        required: true
      explanation:
        description: What it means and what to do.
        type: str
        required: true
  fail_on:
    description:
      - V(unhealthy) fails on any unhealthy unit; V(unknown) fails unless a O(known_failures) entry
        explains it (then it warns); V(never) only reports.
    type: str
    choices: [unhealthy, unknown, never]
    default: unhealthy
"""

EXAMPLES = r"""
- name: Check that NanoClaw stays up
  nanoclaw.provision.service_health:
    unit: nanoclaw.service
    log_files: [/home/nanoclaw/nanoclaw/logs/nanoclaw.error.log]
    fail_on: unknown
  become: true
  become_user: nanoclaw
"""

RETURN = r"""
healthy:
  description: Whether the unit is up and stayed up for O(window) seconds.
  returned: always
  type: bool
state:
  description: C(ActiveState/SubState) at the end of the check, e.g. C(active/running), C(activating/auto-restart).
  returned: always
  type: str
restarts:
  description: Restarts systemd counted during the check (C(NRestarts) growth).
  returned: always
  type: int
up_seconds:
  description: How long the main process had been up at the end of the check.
  returned: always
  type: float
waited:
  description: Seconds the check watched the unit.
  returned: always
  type: float
main_pid:
  description: The main process id (0 when none).
  returned: always
  type: int
log_tail:
  description: Per log file, its last O(lines) lines (only when not healthy).
  returned: always
  type: dict
reason:
  description: The matching log line of a known failure, or the last error-looking log line.
  returned: always
  type: str
explanation:
  description: The O(known_failures) explanation that matched (empty when none did).
  returned: always
  type: str
"""

import os
import re
import time

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

from ansible.module_utils.basic import AnsibleModule

PROPS = ("LoadState", "ActiveState", "SubState", "NRestarts", "MainPID", "ExecMainStartTimestampMonotonic", "Result")


def show(module, unit, scope):
    argv = ["systemctl"] + (["--user"] if scope == "user" else []) + ["show", unit, "--property=" + ",".join(PROPS)]
    env = None
    if scope == "user" and not os.environ.get("XDG_RUNTIME_DIR"):
        env = {"XDG_RUNTIME_DIR": f"/run/user/{os.getuid()}"}
    rc, out, err = module.run_command(argv, environ_update=env)
    if rc != 0:
        module.fail_json(msg=f"cannot read the unit {unit}: {(err or out).strip()}")
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {
        "load": props.get("LoadState", ""),
        "state": "{}/{}".format(props.get("ActiveState", ""), props.get("SubState", "")),
        "restarts": int(props.get("NRestarts") or 0),
        "pid": int(props.get("MainPID") or 0),
        "start": int(props.get("ExecMainStartTimestampMonotonic") or 0) / 1e6,
        "result": props.get("Result", ""),
    }


def tail(path, lines):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    # pino and friends colour their lines: the message is for people and logs.
    return [ANSI.sub("", line) for line in text.splitlines()[-lines:]]


def main():
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "required": True},
            "scope": {"type": "str", "choices": ["user", "system"], "default": "user"},
            "window": {"type": "int", "default": 10},
            "log_files": {"type": "list", "elements": "path", "default": []},
            "lines": {"type": "int", "default": 20},
            "known_failures": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"match": {"type": "str", "required": True}, "explanation": {"type": "str", "required": True}},
            },
            "fail_on": {"type": "str", "choices": ["unhealthy", "unknown", "never"], "default": "unhealthy"},
        },
        supports_check_mode=True,
    )
    p = module.params
    started = time.monotonic()
    first = show(module, p["unit"], p["scope"])
    if first["load"] == "not-found":
        module.fail_json(msg="the unit {} does not exist".format(p["unit"]), healthy=False)
    current = first
    while True:
        now = time.monotonic()
        up = now - current["start"] if current["pid"] else 0.0
        running = current["state"] == "active/running" and current["pid"] > 0
        restarted = current["restarts"] > first["restarts"] or (first["pid"] and current["pid"] != first["pid"])
        # Waiting to be restarted: its main process has exited already (what watching
        # would find a few seconds later, when systemd restarts it).
        restarted = restarted or current["state"] == "activating/auto-restart"
        if running and not restarted and up >= p["window"]:
            healthy = True
            break
        if restarted or current["state"].startswith("failed") or now - started > p["window"] + 5:
            healthy = False
            break
        time.sleep(min(1.0, max(0.2, p["window"] - up)) if running else 1.0)
        current = show(module, p["unit"], p["scope"])
    result = {
        "changed": False,
        "healthy": healthy,
        "state": current["state"],
        "restarts": current["restarts"] - first["restarts"],
        "up_seconds": round(up, 1),
        "waited": round(time.monotonic() - started, 1),
        "main_pid": current["pid"],
        "log_tail": {},
        "reason": "",
        "explanation": "",
    }
    if healthy:
        module.exit_json(**result)
    for path in p["log_files"]:
        lines = tail(path, p["lines"])
        if lines is not None:
            result["log_tail"][path] = lines
    all_lines = [line for lines in result["log_tail"].values() for line in lines]
    for known in p["known_failures"]:
        hit = next((line for line in reversed(all_lines) if known["match"] in line), None)
        if hit:
            result["reason"], result["explanation"] = hit.strip(), known["explanation"]
            break
    if not result["reason"]:
        errors = [line for line in all_lines if any(w in line.lower() for w in ("error", "fatal", "exception", "failed"))]
        result["reason"] = (errors or all_lines or [""])[-1].strip()
    gone = f", main process {first['pid']} gone" if first["pid"] and current["pid"] != first["pid"] else ""
    summary = f"{p['unit']} is not staying up: {current['state']} after {result['waited']:.0f} s, {result['restarts']} restart(s){gone}"
    if result["reason"]:
        summary += f"; upstream says: {result['reason']}"
    if result["explanation"]:
        summary += f"; {result['explanation']}"
    if p["fail_on"] == "unhealthy" or (p["fail_on"] == "unknown" and not result["explanation"]):
        module.fail_json(msg=summary, **result)
    module.warn(summary)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
