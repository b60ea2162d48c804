"""Messages posted by the app's thread workers to the screens (thread-safe ``post_message``)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class VaultChanged(Message):
    """The vault handle was (re)opened or closed."""


class LibraryLoaded(Message):
    def __init__(self, rows: list, counts: dict[str, int], info: Any, category: str | None,
                 name_like: str | None) -> None:
        super().__init__()
        self.rows = rows
        self.counts = counts
        self.info = info
        self.category = category
        self.name_like = name_like


class SearchDone(Message):
    def __init__(self, result: Any, query: str) -> None:
        super().__init__()
        self.result = result
        self.query = query


class RecordLoaded(Message):
    def __init__(self, row: Any, category: int | None, bits: Any, class_names: list[str] | None,
                 code: str = "h2") -> None:
        super().__init__()
        self.code = code  # what the index holds: "h2" or "fingerprint"
        self.row = row
        self.category = category
        self.bits = bits
        self.class_names = class_names


class SpectrogramReady(Message):
    def __init__(self, recording_id: int, spec: Any) -> None:
        super().__init__()
        self.recording_id = recording_id
        self.spec = spec


class Exported(Message):
    def __init__(self, recording_id: int, path: str) -> None:
        super().__init__()
        self.recording_id = recording_id
        self.path = path


class IngestProgress(Message):
    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class IngestStarted(Message):
    def __init__(self, total: int | None) -> None:
        super().__init__()
        self.total = total


class IngestDone(Message):
    """``skipped``: files in the chosen folders that are no audio format speechvault reads;
    ``problems``: (source, why it gave no file)."""

    def __init__(self, report: Any, skipped: list | None = None,
                 problems: list | None = None, warnings: list | None = None) -> None:
        super().__init__()
        self.warnings = list(warnings or [])  # (path, message): e.g. almost all silence
        self.report = report
        self.skipped = list(skipped or [])
        self.problems = list(problems or [])


class IngestFinished(Message):
    """The ingest worker ended in any way (done, failed, busy): the screen leaves running mode."""


class PassphraseChecked(Message):
    def __init__(self, passphrase: str, ok: bool) -> None:
        super().__init__()
        self.passphrase = passphrase
        self.ok = ok


class Deleted(Message):
    def __init__(self, recording_id: int, name: str) -> None:
        super().__init__()
        self.recording_id = recording_id
        self.name = name
