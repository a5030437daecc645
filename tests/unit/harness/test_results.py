"""The harness counts passed/failed tests from junit XML: test that counting."""

from __future__ import annotations

from pathlib import Path

from tests.harness.results import junit_counts

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="a" name="ok1"/>
<testcase classname="a" name="ok2"/>
<testcase classname="a" name="bad"><failure message="x">x</failure></testcase>
<testcase classname="a" name="err"><error message="y">y</error></testcase>
<testcase classname="a" name="skip"><skipped message="z">z</skipped></testcase>
</testsuite></testsuites>
"""


def test_counts_failures_and_errors_as_failed(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(REPORT)
    assert junit_counts(path) == (2, 2, 1)


def test_bare_testsuite_root(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text('<testsuite><testcase name="a"/><testcase name="b"><skipped/></testcase></testsuite>')
    assert junit_counts(path) == (1, 0, 1)
