# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sentinel parsing of the NanoClaw v1 agent contract.

An agent writes its result to stdout as JSON between two marker lines; anything
else on stdout (logs, progress) is noise. A start marker left unclosed before the
next start marker is ignored (the later one opens the output). :class:`SentinelParser` is fed the
output in arbitrary chunks (as it arrives from a pipe) and yields every complete
output; :func:`parse_outputs` does the same for a whole text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

START = "---NANOCLAW_OUTPUT_START---"
END = "---NANOCLAW_OUTPUT_END---"


@dataclass(frozen=True)
class Output:
    """One marker-delimited output: the raw text between the markers and its decoded JSON."""

    raw: str
    value: Any = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def decode(raw: str) -> Output:
    """Decode the text between two markers; an output must be a JSON object."""
    text = raw.strip()
    try:
        value = json.loads(text)
    except ValueError as exc:
        return Output(raw=raw, error=f"invalid JSON between the markers: {exc}")
    if not isinstance(value, dict):
        return Output(raw=raw, value=value, error=f"the output between the markers is a JSON {type(value).__name__}, not an object")
    return Output(raw=raw, value=value)


class SentinelParser:
    """Incremental parser: feed chunks, collect complete outputs in order."""

    def __init__(self) -> None:
        self._buffer = ""
        self._inside = False
        self.outputs: list[Output] = []

    @property
    def inside_output(self) -> bool:
        """True when a start marker was seen and its end marker has not been yet."""
        return self._inside

    def feed(self, chunk: str) -> list[Output]:
        """Consume ``chunk``; return the outputs it completed."""
        self._buffer += chunk
        found: list[Output] = []
        while True:
            marker = END if self._inside else START
            index = self._buffer.find(marker)
            if index < 0:
                if not self._inside:
                    # Keep only what could be the beginning of a start marker.
                    keep = len(START) - 1
                    self._buffer = self._buffer[-keep:] if len(self._buffer) > keep else self._buffer
                break
            if self._inside:
                body = self._buffer[:index]
                # A start marker that was never closed before the next one: the later one counts.
                restart = body.rfind(START)
                found.append(decode(body[restart + len(START) :] if restart >= 0 else body))
            self._buffer = self._buffer[index + len(marker) :]
            self._inside = not self._inside
        self.outputs.extend(found)
        return found


def parse_outputs(text: str) -> list[Output]:
    """Every complete output in ``text``, in order."""
    parser = SentinelParser()
    parser.feed(text)
    return parser.outputs
