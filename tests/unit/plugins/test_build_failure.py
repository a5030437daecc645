"""build_failure: which download a failed image build stopped at, from real-shaped builder output."""

from __future__ import annotations

import pytest

from ansible_collections.nanoclaw.provision.plugins.filter.build_failure import build_failure

CASES = [
    # BuildKit (plain progress) running v2's bun install step, no route to the host.
    (
        "#9 [ 3/12] RUN curl -fsSL https://bun.example.invalid/install | bash -s bun-v1.3.12\n"
        "#9 0.311 curl: (6) Could not resolve host: bun.example.invalid\n#9 ERROR: process did not complete successfully",
        "https://bun.example.invalid/install",
        "unreachable",
    ),
    # npm behind a TLS-intercepting proxy whose CA the build does not trust.
    (
        "npm error code SELF_SIGNED_CERT_IN_CHAIN\n"
        "npm error request to https://npm.example.invalid/agent-browser failed, reason: self-signed certificate in certificate chain",
        "https://npm.example.invalid/agent-browser",
        "tls",
    ),
    # apt without a route.
    (
        "Err:1 http://apt.example.invalid/debian bookworm InRelease\n  Could not resolve 'apt.example.invalid'\n"
        "E: Failed to fetch http://apt.example.invalid/debian/dists/bookworm/InRelease  Could not resolve 'apt.example.invalid'",
        "http://apt.example.invalid/debian/dists/bookworm/InRelease",
        "unreachable",
    ),
    # BuildKit fetching the `# syntax=` frontend.
    (
        "ERROR: failed to solve: failed to resolve source metadata for docker.io/docker/dockerfile:1.7: failed to do request",
        "docker.io/docker/dockerfile:1.7",
        "frontend",
    ),
    # The classic builder meeting RUN --mount.
    ("Step 5/20 : RUN --mount=type=cache,target=/var/cache/apt true\nthe --mount option requires BuildKit.", None, "buildkit"),
    ("Successfully built 0123456789ab", None, "none"),
]


@pytest.mark.parametrize(("output", "url", "kind"), CASES)
def test_the_failed_download_and_its_kind(output, url, kind):
    found = build_failure(output)
    assert found["url"] == url
    assert found["kind"] == kind
    assert (found["line"] == "") == (kind == "none")
