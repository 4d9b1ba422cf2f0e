"""NotesLoad (tests/http_load.py), the end-to-end tests' reads and writes of notes-api, against the real app here.

Its numbers are what tests/e2e/test_notes_api.py asserts on, so they are checked against a known
truth first: every note it counts as written is in the database, and when the app goes away
mid-load the failures are counted (connection errors) and the gap spans them.
"""

from __future__ import annotations

import time

from http_load import NotesLoad
from notes_api_fixtures import RunNotes, data_dir, notes_api_artifact, notes_api_release, run_notes

__all__ = ["data_dir", "notes_api_artifact", "notes_api_release", "run_notes"]  # fixtures used by the tests below


def test_every_note_it_counts_as_written_is_stored_and_read_back(run_notes: RunNotes) -> None:
    app = run_notes()
    token = app.signup_and_login("loader")
    with NotesLoad("127.0.0.1", "notes.example.test", token, threads=2, interval=0.01, port=app.port, limit_seconds=1.5) as load:
        time.sleep(1.5)
    assert load.summary.failed == 0 and load.gap_seconds == 0.0, load.summary.describe()
    assert load.written and load.summary.statuses[201] == len(load.written), load.summary.describe()
    assert load.summary.statuses[200] >= len(load.written) - 2  # each note read back (the last ones maybe not yet)
    stored = {note["id"]: note["text"] for note in app.call("GET", "/notes", token=token).json()["notes"]}
    assert load.written.items() <= stored.items()
    assert set(load.summary.versions) == {"1.2.3"}


def test_an_app_gone_mid_load_is_counted_as_failures_spanning_the_gap(run_notes: RunNotes) -> None:
    app = run_notes()
    token = app.signup_and_login("loader")
    with NotesLoad("127.0.0.1", "notes.example.test", token, threads=2, interval=0.01, port=app.port, limit_seconds=10) as load:
        time.sleep(0.5)
        app.process.kill()
        app.process.wait(timeout=10)
        time.sleep(1.0)
    assert load.summary.errors and sum(load.summary.errors.values()) == load.summary.failed, load.summary.describe()
    assert 0 < load.gap_seconds < load.summary.seconds, load.summary.describe()
