"""Progress lines for the build's log (``buildlog.note``): on the terminal's file descriptor, never raising."""
from __future__ import annotations

import io
import re
import sys

from xai_helpers.buildlog import note


def test_a_note_goes_to_the_terminal_with_a_timestamp(capfd):
    note("study: re-analysing 6 photos")
    err = capfd.readouterr().err
    assert re.fullmatch(r"  \[\d\d:\d\d:\d\d\] study: re-analysing 6 photos\n", err)


def test_without_a_terminal_a_note_is_dropped_silently(monkeypatch, capfd):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # fileno() raises io.UnsupportedOperation
    note("nowhere to go")
    assert sys.stderr.getvalue() == "" and capfd.readouterr().err == ""
