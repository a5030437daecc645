# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the download an image build failed on, in the builder's output."""

from __future__ import annotations

import re

DOCUMENTATION = r"""
name: build_failure
author: nanoclaw.provision maintainers (@nanoclaw)
version_added: 0.1.0
short_description: The download an image build failed on
description:
  - Reads the output of a failed C(docker build), C(docker buildx build) or C(podman build) and
    returns what it could not download - C(url) (or the host when only that is known), C(kind)
    (V(tls) the proxy's or mirror's CA is not trusted, V(unreachable) no route, no name or refused,
    V(http) an error status, V(frontend) BuildKit could not fetch the C(# syntax=) frontend image,
    V(base) the base image, V(buildkit) the Dockerfile needs BuildKit and the builder is not one)
    and C(line) (the output line that says so).
  - Returns C(url=None) and C(kind=none) when the output shows no failed download.
options:
  _input:
    description: The build output (stdout and stderr, or a module's failure message).
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Say which download failed
  ansible.builtin.debug:
    msg: "{{ (build.msg ~ build.stdout | default('')) | nanoclaw.provision.build_failure }}"
"""

RETURN = r"""
_value:
  description: C(url), C(kind) and C(line).
  type: dict
"""

URL = r"https?://[^\s'\"<>()\[\]]+"
# (pattern, kind); the first line of the output that matches names the failure. Each pattern
# captures a URL or a host.
TLS_WORDS = r"(?:SELF_SIGNED_CERT|self[- ]signed certificate|unable to (?:get|verify)[\w ]*certificate)"
FRONTEND = r"(docker\.io/docker/dockerfile[^\s:]*:[\w.]+|docker/dockerfile[^\s]*)"
IMAGE = r"([\w.-]+(?::\d+)?/[\w./-]+(?::[\w.-]+)?)"
PATTERNS: list[tuple[str, str]] = [
    (r"(the --mount option requires BuildKit|requires BuildKit|BuildKit is enabled but the buildx component is missing)", "buildkit"),
    (r"(?:request to|fetch|GET) (" + URL + r").*" + TLS_WORDS, "tls"),
    (r"(" + URL + r").*(?:certificate verify failed|x509: certificate|SSL certificate problem)", "tls"),
    (r"(?:SSL certificate problem|self[- ]signed certificate|x509: certificate signed by unknown authority).*?(" + URL + r")?$", "tls"),
    (r"failed to (?:resolve source metadata|solve with frontend dockerfile\.v0).*?" + FRONTEND, "frontend"),
    (r"Failed to fetch (" + URL + r")", "unreachable"),
    (r"Could not resolve '([^']+)'", "unreachable"),
    (r"Could not resolve host: ([^\s]+)", "unreachable"),
    (r"Could not connect to ([^\s:]+)", "unreachable"),
    (r"curl: \(\d+\) .*?(" + URL + r")", "http"),
    (r"curl: \(22\) The requested URL returned error: (\d+)", "http"),
    (r"(?:request to|GET|fetch(?:ing)?) (" + URL + r") failed", "unreachable"),
    (r"(?:ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ENETUNREACH).*?(" + URL + r"|[\w.-]+\.[a-z]{2,})", "unreachable"),
    (r"(?:pulling|pull|manifest unknown|failed to resolve reference|initializing source) [\"']?(?:docker://)?" + IMAGE, "base"),
]


def build_failure(text: str) -> dict:
    lines = [line.strip() for line in str(text or "").replace("\\n", "\n").splitlines() if line.strip()]
    for pattern, kind in PATTERNS:
        regex = re.compile(pattern, re.IGNORECASE)
        for line in lines:
            match = regex.search(line)
            if match:
                if kind == "buildkit":
                    return {"url": None, "kind": kind, "line": line[:300]}
                found = next((g for g in match.groups() if g), None)
                before = re.findall(URL, " ".join(lines[: lines.index(line) + 1]))
                if found is None or (kind == "http" and found.isdigit()):
                    # The line names no URL: the last one the build printed before it.
                    found = before[-1] if before else found
                elif "://" not in found and "/" not in found:
                    # Only a host: the last URL on that host the build printed (its RUN line).
                    on_host = [u for u in before if re.match(r"https?://" + re.escape(found.strip("'")) + r"(?:[:/]|$)", u)]
                    found = on_host[-1] if on_host else found
                return {"url": found.rstrip(".,;:") if found else None, "kind": kind, "line": line[:300]}
    return {"url": None, "kind": "none", "line": ""}


class FilterModule:
    """nanoclaw.provision image build filters."""

    def filters(self):
        return {"build_failure": build_failure}
