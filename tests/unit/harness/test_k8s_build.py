"""The throwaway module the harness builds Kubernetes from."""

from __future__ import annotations

import pytest

from tests.harness.common import HarnessError
from tests.harness.k8s_build import _staging_version, module_file

UPSTREAM = """module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
\tgithub.com/spf13/cobra v1.8.1
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
)
"""


def test_staging_modules_are_pinned_to_the_matching_published_version():
    text = module_file(UPSTREAM, "v1.33.13")
    assert "\tk8s.io/kubernetes v1.33.13\n" in text
    assert "\tk8s.io/api v0.33.13\n" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.33.13\n" in text
    assert "./staging" not in text


def test_go_and_godebug_lines_follow_upstream():
    text = module_file(UPSTREAM, "v1.33.13")
    assert "\ngo 1.24.0\n" in text
    assert "\ngodebug default=go1.24\n" in text


def test_sample_modules_are_left_out():
    assert "sample-cli-plugin" not in module_file(UPSTREAM, "v1.33.13")


def test_a_go_mod_without_staging_is_refused():
    with pytest.raises(HarnessError, match="no staging replace directives"):
        module_file("module k8s.io/kubernetes\n\ngo 1.24.0\n", "v1.33.13")


@pytest.mark.parametrize("bad", ["1.33.13", "v1.33", "v2.0.1", "latest"])
def test_a_malformed_version_is_refused(bad):
    with pytest.raises(HarnessError, match="NANOCLAW_K8S_VERSION"):
        _staging_version(bad)


def test_the_build_skips_dwarf_by_default_and_keeps_go_defaults_when_asked(tmp_path):
    """The linker strips the binaries (-s -w): the compiler's DWARF would be thrown away anyway."""
    from tests.harness.k8s_build import GCFLAGS, build_argv

    argv = build_argv("2", "-X a=b", tmp_path, ["kubectl", "kubelet"])
    assert GCFLAGS == "all=-dwarf=false"
    assert argv[argv.index("-gcflags") + 1] == "all=-dwarf=false"
    assert argv[argv.index("-ldflags") + 1] == "-s -w -X a=b"
    assert argv[-2:] == ["k8s.io/kubernetes/cmd/kubectl", "k8s.io/kubernetes/cmd/kubelet"]
    assert "-gcflags" not in build_argv("2", "", tmp_path, ["kubectl"], gcflags="")
