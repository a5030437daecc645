"""The v1 sentinel parser: fixed cases and properties over arbitrary interleaved output."""

from __future__ import annotations

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import END, START, SentinelParser, decode, parse_outputs

# Noise is anything that does not contain a whole marker: an agent's logs, progress, and
# partial markers (prefixes and suffixes of them), which must not confuse the parser.
FRAGMENTS = [START[:k] for k in range(1, len(START))] + [END[k:] for k in range(1, len(END))] + ["{", "}", '"status"', "\n"]
noise = (
    st.lists(st.text(max_size=12) | st.sampled_from(FRAGMENTS), max_size=6).map("".join).filter(lambda s: START not in s and END not in s)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
outputs = st.dictionaries(st.text(max_size=10), json_values, max_size=4).map(lambda d: {"status": "success", **d})


def render(parts: list[tuple[str, dict | None]]) -> str:
    """noise, then (when the output is not None) START json END, repeatedly."""
    text = ""
    for before, output in parts:
        text += before
        if output is not None:
            text += f"{START}\n{json.dumps(output)}\n{END}"
    return text


def occurrences(text: str, marker: str) -> int:
    """Occurrences of ``marker`` in ``text``, overlapping ones included."""
    return sum(1 for i in range(len(text)) if text.startswith(marker, i))


def only_our_markers(text: str, count: int) -> None:
    """Noise next to a marker can complete a marker of its own; such texts state a different case."""
    assume(occurrences(text, START) == count and occurrences(text, END) == count)


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(text[last:p])
        last = p
    pieces.append(text[last:])
    return pieces


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(noise, st.none() | outputs), max_size=6), noise)
def test_finds_exactly_the_embedded_outputs_in_order(parts, trailer):
    text = render(parts) + trailer
    expected = [o for _noise, o in parts if o is not None]
    only_our_markers(text, len(expected))
    found = parse_outputs(text)
    assert [o.value for o in found] == expected
    assert all(o.valid for o in found)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(noise, st.none() | outputs), max_size=5), st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_chunking_does_not_change_the_result(parts, cuts):
    text = render(parts)
    only_our_markers(text, sum(o is not None for _noise, o in parts))
    parser = SentinelParser()
    streamed = []
    for piece in split_at(text, cuts):
        streamed += parser.feed(piece)
    assert streamed == parse_outputs(text)
    assert parser.outputs == streamed
    assert not parser.inside_output


@settings(max_examples=100, deadline=None)
@given(noise, outputs, noise)
def test_an_unterminated_output_is_not_reported(before, output, after):
    text = f"{before}{START}\n{json.dumps(output)}\n{after}"
    assume(occurrences(text, START) == 1 and END not in text)
    parser = SentinelParser()
    parser.feed(text)
    assert parser.outputs == []
    assert parser.inside_output


@given(noise)
def test_noise_alone_yields_nothing(text):
    assert parse_outputs(text) == []


def test_invalid_json_is_reported_not_raised():
    (out,) = parse_outputs(f'log\n{START}\n{{"status": "success", oops\n{END}\n')
    assert not out.valid
    assert "invalid JSON" in out.error


def test_a_json_array_is_not_an_output_object():
    out = decode("[1, 2]")
    assert not out.valid
    assert "list" in out.error


def test_markers_split_mid_way_across_chunks():
    parser = SentinelParser()
    text = f'noise {START}{{"status": "success", "result": "a"}}{END} tail'
    found = []
    for i in range(0, len(text), 3):
        found += parser.feed(text[i : i + 3])
    assert [o.value for o in found] == [{"status": "success", "result": "a"}]


def test_several_outputs_keep_their_order():
    text = render([("a", {"status": "success", "result": 1}), ("b", {"status": "error", "error": "x"})])
    assert [o.value["status"] for o in parse_outputs(text)] == ["success", "error"]


def test_an_unclosed_start_marker_before_the_real_one_is_ignored():
    text = f'{START}\nagent crashed mid-output\n{START}\n{{"status": "success"}}\n{END}\n'
    assert [o.value for o in parse_outputs(text)] == [{"status": "success"}]
