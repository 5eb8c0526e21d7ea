"""Journald's format: a syslog priority prefix per line, no timestamp of our own."""

from __future__ import annotations

import logging

from orlop.ops.logs import JournalFormatter


def test_journal_lines_carry_the_priority() -> None:
    record = logging.LogRecord("orlop", logging.WARNING, __file__, 1, "disk %s slow", ("a",), None)
    assert JournalFormatter().format(record) == "<4>orlop: disk a slow"
    record.levelno, record.levelname = logging.ERROR, "ERROR"
    assert JournalFormatter().format(record).startswith("<3>")
