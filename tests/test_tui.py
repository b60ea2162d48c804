"""The Textual TUI (tui/): pilot tests on real vaults, and snapshots of every screen.

Vaults are real ``store.vault.Vault`` files built in tmp dirs (scrypt at log2_n=10) from the
example recordings shipped in ``speechvault/examples``. Two models:

* ``fake``: ``tests.fakes.FakeEncoder`` (deterministic, no TFLite runtime) -- always runs, and
  is the one the snapshots use (their pixels must not change when the real model is retrained);
* ``real``: the default model ``hashing/models/default.tflite`` -- skipped, with the reason, when
  that file (or the TFLite runtime) is absent.

Snapshots run with ``freeze=True`` (timings, timestamps and the vault's file size shown as fixed
placeholders) at 80x24 and 120x40. Update them with ``pytest tests/test_tui.py --snapshot-update``.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("textual")

from speechvault.errors import AudioDecodeError, VaultBusyError  # noqa: E402
from store.vault import Vault  # noqa: E402
from tests.fakes import FakeEncoder, tone_mix, write_wav  # noqa: E402
from tui.app import SpeechVaultApp  # noqa: E402
from tui.screens.ingest import IngestScreen  # noqa: E402
from tui.screens.library import LibraryScreen  # noqa: E402
from tui.screens.modals import (BusyModal, ConfirmModal, ErrorModal, ExportModal,  # noqa: E402
                                PassphraseModal)
from tui.screens.record import RecordScreen  # noqa: E402
from tui.screens.search import SearchScreen  # noqa: E402
from tui.widgets import Bar, HEAT_RAMP, render_ber_chart, render_heatmap, render_hash_bits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "speechvault" / "examples"
DEFAULT_MODEL = ROOT / "hashing" / "models" / "default.tflite"
PW = "correct horse battery staple"
LOG2N = 10
SIZES = [(80, 24), (120, 40)]
CLASS_NAMES = ["zero", "one", "two", "three"]

#: (example file, category label given at ingest; None = the model's prediction)
CORPUS = [
    ("0_en_1.wav", "zero"), ("0_en-us_2.wav", "zero"), ("0_en-f3_3.wav", "zero"),
    ("1_en-us_1.wav", "one"), ("1_en-f3_2.wav", "one"), ("1_en-m3_3.wav", "one"),
    ("2_en-f3_1.wav", "two"), ("2_en-m3_2.wav", "two"), ("2_en_3.wav", "two"),
    ("3_en-m3_1.wav", None), ("3_en_2.wav", None), ("3_en-us_3.wav", None),
]
#: the recording the CPO query is a copy of
TARGET = "2_en-f3_1.wav"


def async_test(fn):
    """Run an async test with asyncio.run (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def _fake_encoder() -> FakeEncoder:
    return FakeEncoder(K=384, C=4, seed=7, clip_seconds=0.5, class_names=CLASS_NAMES)


def vault_cls_for(encoder):
    """``Vault`` whose ``open`` passes ``encoder`` (a vault coded by the FakeEncoder cannot load
    its stored 'model'); None -> the real ``Vault``."""
    if encoder is None:
        return Vault

    class _Vault(Vault):
        @classmethod
        def open(cls, path, **kw):
            kw.setdefault("encoder", encoder)
            return super().open(path, **kw)

    return _Vault


def _build_vault(path: Path, encoder) -> Path:
    if not EXAMPLES.is_dir():
        pytest.skip(f"example recordings missing: {EXAMPLES}")
    v = Vault.create(path, PW, encoder=encoder, kdf_log2_n=LOG2N)
    try:
        for name, cat in CORPUS:
            rep = v.ingest([EXAMPLES / name], category=cat)
            assert not rep.errors, rep.errors
    finally:
        v.close()
    return path


@pytest.fixture(scope="module")
def fake_encoder():
    return _fake_encoder()


@pytest.fixture(scope="module")
def fake_vault(tmp_path_factory, fake_encoder) -> Path:
    return _build_vault(tmp_path_factory.mktemp("fakevault") / "demo.duckdb", fake_encoder)


@pytest.fixture(scope="module")
def real_vault(tmp_path_factory) -> Path:
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"the default model is not built yet ({DEFAULT_MODEL.relative_to(ROOT)} absent)")
    try:
        from hashing.encoder import Encoder

        Encoder.default()
    except Exception as exc:  # RuntimeMissingError, ModelError
        pytest.skip(f"default model unusable here: {exc}")
    return _build_vault(tmp_path_factory.mktemp("realvault") / "demo.duckdb", None)


@pytest.fixture(params=["fake", "real"])
def any_vault(request, fake_encoder):
    """(vault path, vault class) for both models."""
    if request.param == "fake":
        return request.getfixturevalue("fake_vault"), vault_cls_for(fake_encoder)
    return request.getfixturevalue("real_vault"), vault_cls_for(None)


@pytest.fixture
def vault_copy(tmp_path, fake_vault) -> Path:
    """A private copy for tests that write (ingest)."""
    d = tmp_path / "vc"
    d.mkdir()
    dst = d / "demo.duckdb"
    shutil.copy(fake_vault, dst)
    return dst


@pytest.fixture
def no_env_passphrase(monkeypatch):
    monkeypatch.delenv("SPEECHVAULT_PASSPHRASE", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def env_passphrase(monkeypatch):
    monkeypatch.setenv("SPEECHVAULT_PASSPHRASE", PW)
    monkeypatch.delenv("NO_COLOR", raising=False)


def cpo_copy(src: Path, dst: Path, db: float = -3.0) -> Path:
    """The paper's -3 dB content preserving operation, written as a new file."""
    y, sr = sf.read(src, dtype="float32")
    try:
        from hashing.cpo import gain_db

        z = gain_db(y, db)
    except ImportError:
        z = np.clip(y * 10 ** (db / 20), -1, 1)
    sf.write(dst, z, sr, subtype="PCM_16")
    return dst


def make_app(vault: Path, vault_cls, **kw) -> SpeechVaultApp:
    kw.setdefault("freeze", True)
    return SpeechVaultApp(vault, vault_cls=vault_cls, **kw)


async def settle(pilot, rounds: int = 400) -> None:
    """Wait until the app's own workers (not textual's, e.g. DirectoryTree's loader, which runs
    for ever) have finished and the messages they posted are handled."""
    app = pilot.app

    def busy() -> list:
        return [w for w in app.workers if w.node is app and w.is_running]

    for _ in range(rounds):
        await pilot.pause()
        running = busy()
        if not running:
            await pilot.pause()
            if not busy():
                break
            continue
        await asyncio.wait([asyncio.ensure_future(_quiet(w.wait())) for w in running],
                           timeout=0.1)
    await pilot.pause()


async def _quiet(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[("space" if c == " " else c) for c in text])


async def set_field(pilot, selector: str, value: str) -> None:
    field = pilot.app.screen.query_one(selector)
    field.focus()
    field.value = value
    await pilot.pause()


# =============================================================================================
# pure renderers
# =============================================================================================

def test_ber_chart_sets_matches_apart_and_draws_tau():
    bars = [Bar("orig.wav", 0.02, True), Bar("other.wav", 0.41, False)]
    text = render_ber_chart(bars, 0.26, 60, color=False).plain
    lines = text.splitlines()
    assert "τ" in lines[0]
    tau_col = lines[0].index("τ")
    orig = next(line for line in lines if line.startswith("orig.wav"))
    other = next(line for line in lines if line.startswith("other.wav"))
    assert "█" in orig and "▒" not in orig
    assert "▒" in other and "█" not in other
    assert orig[tau_col] == "│"          # the tau line crosses the short bar's row
    assert other[tau_col] == "▒"         # and is covered by the long one


def test_heatmap_character_ramp_without_colour():
    spec = np.tile(np.linspace(0, 1, 40), (128, 1))  # louder to the right
    text = render_heatmap(spec, 20, 4, color=False).plain
    rows = text.splitlines()
    assert len(rows) == 4 and all(len(r) == 20 for r in rows)
    assert set("".join(rows)) <= set(HEAT_RAMP)
    assert HEAT_RAMP.index(rows[0][-1]) > HEAT_RAMP.index(rows[0][0])
    coloured = render_heatmap(spec, 20, 4, color=True)
    assert set(coloured.plain) <= {"▀", "\n"} and coloured.spans


def test_hash_bits_view_shows_h1_and_all_k_bits():
    bits = (np.arange(384) % 3 == 0).astype(np.uint8)
    text = render_hash_bits(2, 4, bits, class_name="two", color=False).plain
    assert "h1 (4 bits) 0010  = two" in text
    assert text.count("1") - text.count("h1") - 1 >= int(bits.sum())  # every 1 bit is shown
    assert "K=384" in text


def test_path_completion(tmp_path):
    from tui.suggest import complete_path

    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "b.wav").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    base = str(tmp_path) + "/"
    assert complete_path(base + "rec") == base + "recordings/"          # directories end in /
    assert complete_path(base + "recordings/") == base + "recordings/b.wav"
    assert complete_path(base + "r") == base + "recordings/"            # a directory first
    assert complete_path(base + "zzz") is None
    assert complete_path(base + ".h") == base + ".hidden/"              # dot only when typed


def test_formatter_freeze(monkeypatch):
    from tui.format import Formatter

    monkeypatch.setenv("SPEECHVAULT_TUI_FREEZE", "1")
    assert Formatter().seconds(0.0123) == "#.### s"
    monkeypatch.delenv("SPEECHVAULT_TUI_FREEZE")
    f = Formatter()
    assert f.seconds(0.0123) == "12.3 ms" and f.seconds(1.5) == "1.500 s"
    assert f.size(2048) == "2.0 KiB" and f.duration(75.5) == "1:15.50"


# =============================================================================================
# pilot tests
# =============================================================================================

@async_test
async def test_open_vault_and_filter_by_category(fake_vault, fake_encoder, no_env_passphrase):
    app = make_app(fake_vault, vault_cls_for(fake_encoder))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LibraryScreen)
        table = screen.query_one("#recordings")
        assert table.row_count == len(CORPUS)
        assert "read-only" in app.sub_title and "locked" in app.sub_title
        assert app.vault.read_only
        # the category filter: pick "one" in the side panel (keyboard only)
        await pilot.press("c")
        options = screen.query_one("#categories")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        target = ids.index("one")
        for _ in range(target - options.highlighted):
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
        assert screen.category == "one"
        assert table.row_count == 3
        assert {r.category for r in screen.rows} == {"one"}
        # the name filter narrows further (SQL name_like)
        await pilot.press("slash")
        await type_text(pilot, "f3")
        await pilot.press("enter")
        await settle(pilot)
        assert [r.name for r in screen.rows] == ["1_en-f3_2.wav"]


@async_test
async def test_library_column_widths_set_with_the_rows(fake_vault, fake_encoder,
                                                       no_env_passphrase):
    """The recordings table's columns get their widths when the rows are added, not on the
    table's next idle (DataTable's auto-width): a modal pushed right after a load showed the
    library behind it with the columns cut to their header widths (flaky error/busy snapshots)."""
    import dataclasses
    from collections import Counter

    from tui.messages import LibraryLoaded

    app = make_app(fake_vault, vault_cls_for(fake_encoder))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#recordings")
        # a load with longer names than the table has shown, handled synchronously: the table
        # gets no idle before the widths are read
        rows = [dataclasses.replace(r, name=f"longer-name-{r.name}") for r in screen.rows]
        screen.on_library_loaded(LibraryLoaded(rows, dict(Counter(r.category for r in rows)),
                                               None, None, None))
        widths = [c.get_render_width(table) - 2 * table.cell_padding
                  for c in table.ordered_columns]
        # id: 2 digits; name: the longest; category and duration: their headers; "17.4 KiB";
        # "YYYY-MM-DD"
        assert widths == [2, max(len(r.name) for r in rows), 8, 8, 8, 10]
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == [str(r.id) for r in rows[:3]]
        assert table.row_count == len(CORPUS)
        # a name that looks like markup is shown as it is, not parsed (nor a MarkupError)
        odd = [dataclasses.replace(rows[0], name="x[/b][bold]y.wav")]
        screen.on_library_loaded(LibraryLoaded(odd, {odd[0].category: 1}, None, None, None))
        assert str(table.get_row_at(0)[1]) == "x[/b][bold]y.wav"
        assert table.ordered_columns[1].get_render_width(table) - 2 * table.cell_padding == 16


@async_test
async def test_search_cpo_copy_finds_original_then_export_matches_bytes(
        any_vault, tmp_path, monkeypatch, no_env_passphrase):
    vault, cls = any_vault
    query = cpo_copy(EXAMPLES / TARGET, tmp_path / "query-3dB.wav")
    out = tmp_path / "exported.wav"
    app = make_app(vault, cls, start_mode="search")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        await set_field(pilot, "#query", str(query))
        await pilot.press("enter")
        await settle(pilot)
        res = screen.result
        assert res is not None and res.matched
        first = screen.rows[0]
        assert first.name == TARGET and first.is_match and first.ber < res.tau
        verdict = str(screen.query_one("#verdict").render())
        assert "MATCH" in verdict and TARGET in verdict
        assert "total" in str(screen.query_one("#timings").render())
        # open it (the hits table has focus, its first row is the best hit) and export
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)
        assert app.screen.recording_id == first.recording_id
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, PassphraseModal)       # no passphrase in the env
        await type_text(pilot, PW)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExportModal)
        await set_field(pilot, "#export-path", str(out))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)
    assert out.read_bytes() == (EXAMPLES / TARGET).read_bytes()


@async_test
async def test_search_no_match_is_plain(fake_vault, fake_encoder, tmp_path, no_env_passphrase):
    query = tmp_path / "unrelated.wav"
    write_wav(query, tone_mix(4242, 0.8))
    app = make_app(fake_vault, vault_cls_for(fake_encoder), start_mode="search")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await set_field(pilot, "#tau", "0.05")
        await set_field(pilot, "#query", str(query))
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert screen.result is not None and not screen.result.matched
        assert str(screen.query_one("#verdict").render()).startswith("no match")
        assert all(not h.is_match for h in screen.rows)


@async_test
async def test_wrong_passphrase_is_told_and_retried(fake_vault, fake_encoder, no_env_passphrase):
    app = make_app(fake_vault, vault_cls_for(fake_encoder))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # open the first recording
        await settle(pilot)
        rec = app.screen
        assert isinstance(rec, RecordScreen)
        assert rec.query_one("#heatmap").spectrogram is None  # nothing decrypted yet
        await pilot.press("d")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, PassphraseModal)
        assert modal.query_one("#passphrase").password  # hidden input
        await type_text(pilot, "not the passphrase")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is modal
        assert "wrong passphrase" in str(modal.query_one("#passphrase-error").render())
        assert modal.query_one("#passphrase").value == ""
        await type_text(pilot, PW)
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is rec
        spec = rec.query_one("#heatmap").spectrogram
        assert spec is not None and spec.ndim == 2 and spec.shape[1] > 0
        assert "unlocked" in app.sub_title


@async_test
async def test_wrong_env_passphrase_opens_the_modal(fake_vault, fake_encoder, monkeypatch):
    monkeypatch.setenv("SPEECHVAULT_PASSPHRASE", "stale")
    app = make_app(fake_vault, vault_cls_for(fake_encoder))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PassphraseModal)
        assert "SPEECHVAULT_PASSPHRASE" in str(app.screen.query_one("#passphrase-error").render())


class _GatedVault:
    """Wraps the vault class: the first ingest progress event blocks until the test opens the
    gate, so that the cancel is pressed while the ingest runs, whatever the machine's speed."""

    def __init__(self, base):
        self.base = base
        self.first_event = threading.Event()
        self.gate = threading.Event()

    def open(self, path, **kw):
        v = self.base.open(path, **kw)
        real_ingest = v.ingest
        gated = self

        def ingest(sources, *, progress=None, **kw2):
            def hook(ev):
                if progress is not None:
                    progress(ev)
                if not gated.first_event.is_set():
                    gated.first_event.set()
                    assert gated.gate.wait(30)

            return real_ingest(sources, progress=hook, batch_size=1, **kw2)

        v.ingest = ingest
        return v


@async_test
async def test_cancel_an_ingest(vault_copy, fake_encoder, tmp_path, env_passphrase):
    src = tmp_path / "audio"
    src.mkdir()
    for i in range(12):
        write_wav(src / f"tone_{i:02d}.wav", tone_mix(100 + i, 0.4))
    gated = _GatedVault(vault_cls_for(fake_encoder))
    app = make_app(vault_copy, gated, start_mode="ingest", browse_root=src, read_only=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, IngestScreen)
        await set_field(pilot, "#source", str(src))
        await pilot.press("enter")
        assert screen.sources == [str(src)]
        await pilot.press("ctrl+s")
        for _ in range(200):
            await pilot.pause(0.02)
            if gated.first_event.is_set():
                break
        assert gated.first_event.is_set()
        assert screen.running and app.ingesting
        assert "ingesting" in app.sub_title
        await pilot.press("escape")  # cancel
        assert screen.cancel_event.is_set()
        gated.gate.set()
        await settle(pilot)
        assert not screen.running and not app.ingesting
        report = screen.report
        assert report is not None and report.cancelled
        assert 1 <= len(report.added) < 12
        # back to a read-only handle, and the library shows the new rows
        assert app.vault is not None and app.vault.read_only
        await pilot.press("f2")
        await settle(pilot)
        assert app.screen.query_one("#recordings").row_count == len(CORPUS) + len(report.added)


@async_test
async def test_ingest_lists_per_file_errors(vault_copy, fake_encoder, tmp_path, env_passphrase):
    src = tmp_path / "audio"
    src.mkdir()
    write_wav(src / "new_a.wav", tone_mix(7, 0.4))
    write_wav(src / "new_b.wav", tone_mix(8, 0.6))
    (src / "broken.wav").write_bytes(b"this is not audio at all")
    (src / "memo1.amr").write_bytes(b"#!AMR\n")  # not read: reported
    shutil.copy(EXAMPLES / TARGET, src / "dup.wav")
    app = make_app(vault_copy, vault_cls_for(fake_encoder), start_mode="ingest", browse_root=src,
                   read_only=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.query_one("#tree").focus()
        await pilot.press("a")  # the tree's cursor is on its root: the folder
        await set_field(pilot, "#category", "tones")
        await pilot.press("enter")  # enter in the category field starts
        await settle(pilot)
        r = screen.report
        assert r is not None and not r.cancelled
        assert len(r.added) == 2 and len(r.skipped_duplicates) == 1 and len(r.errors) == 1
        assert [Path(p).name for p, _ in screen.errors] == ["broken.wav"]
        assert "broken.wav" in str(screen.query_one("#ingest-errors").render())
        assert [Path(p).name for p in screen.skipped] == ["memo1.amr"]
        assert "skipped 1 (not audio: .amr)" in str(screen.query_one("#ingest-status").render())
        assert app.vault.read_only
        assert app.vault.category_counts().get("tones") == 2


@async_test
async def test_ingest_starts_on_the_path_input(vault_copy, fake_encoder, tmp_path,
                                              env_passphrase):
    """Typing a path right away goes into the path input; it used to go to the directory
    tree, whose `a` added the current folder."""
    app = make_app(vault_copy, vault_cls_for(fake_encoder), start_mode="ingest",
                   browse_root=tmp_path, read_only=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert app.focused is screen.query_one("#source")
        await type_text(pilot, "a.wav")
        assert screen.query_one("#source").value == "a.wav" and screen.sources == []


@async_test
async def test_read_only_session_neither_ingests_nor_deletes(vault_copy, fake_encoder, tmp_path,
                                                             env_passphrase):
    """Without --write (the default, and what an SSH search account gets): no Delete binding,
    F4 does not open the ingest screen, and the ingest screen refuses to start, saying why."""
    src = tmp_path / "audio"
    src.mkdir()
    write_wav(src / "new.wav", tone_mix(5, 0.4))
    app = make_app(vault_copy, vault_cls_for(fake_encoder))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "read-only" in app.sub_title
        await pilot.press("delete")
        await settle(pilot)
        assert isinstance(app.screen, LibraryScreen)
        assert "delete_selected" not in [b.binding.action
                                         for b in app.screen.active_bindings.values()]
        await pilot.press("f4")
        await settle(pilot)
        assert isinstance(app.screen, LibraryScreen)
    app = make_app(vault_copy, vault_cls_for(fake_encoder), start_mode="ingest", browse_root=src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        await set_field(pilot, "#source", str(src))
        await pilot.press("enter", "ctrl+s")
        await settle(pilot)
        assert screen.report is None and not screen.running
        assert "--write" in str(screen.query_one("#ingest-status").render())
    v = Vault.open(vault_copy, encoder=fake_encoder)
    try:
        assert len(v.list()) == len(CORPUS)
    finally:
        v.close()


@async_test
async def test_write_session_deletes_after_confirmation(vault_copy, fake_encoder,
                                                        no_env_passphrase):
    """--write: Delete asks first (n keeps the recording), y deletes it (Vault.delete) with no
    passphrase, from the library and from a record; the session goes back to read-only."""
    app = make_app(vault_copy, vault_cls_for(fake_encoder), read_only=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        library = app.screen
        first = library._selected_id()
        await pilot.press("delete")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await settle(pilot)
        assert app.screen is library and library.query_one("#recordings").row_count == len(CORPUS)
        await pilot.press("delete")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is library
        assert library.query_one("#recordings").row_count == len(CORPUS) - 1
        assert first not in [r.id for r in library.rows]
        assert app.vault is not None and app.vault.read_only and not app.ingesting
        # from a record: back to the library, one fewer again
        second = library._selected_id()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)
        await pilot.press("delete")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is library
        assert library.query_one("#recordings").row_count == len(CORPUS) - 2
    v = Vault.open(vault_copy, encoder=fake_encoder)
    try:
        assert {first, second}.isdisjoint(r.id for r in v.list())
    finally:
        v.close()


_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.test_tui import vault_cls_for, _fake_encoder
    v = vault_cls_for(_fake_encoder()).open({path!r}, read_only=False)
    print("locked", flush=True)
    sys.stdin.readline()
    v.close()
""")


@async_test
async def test_busy_vault_is_told_and_retried(vault_copy, fake_encoder, no_env_passphrase):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(root=str(ROOT), path=str(vault_copy))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        app = make_app(vault_copy, vault_cls_for(fake_encoder))
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            assert isinstance(app.screen, BusyModal)
            assert app.vault is None
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(30)
            await pilot.press("r")  # retry
            await settle(pilot)
            assert isinstance(app.screen, LibraryScreen)
            assert app.vault is not None
            assert app.screen.query_one("#recordings").row_count == len(CORPUS)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@async_test
async def test_worker_failure_is_a_modal_not_a_crash(fake_vault, fake_encoder, tmp_path,
                                                     no_env_passphrase):
    bad = tmp_path / "notes.wav"
    bad.write_text("hello")
    app = make_app(fake_vault, vault_cls_for(fake_encoder), start_mode="search")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await set_field(pilot, "#query", str(bad))
        await pilot.press("enter")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ErrorModal)
        assert "\n" not in modal.message and modal.message
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SearchScreen)
        assert app.is_running


def test_run_refuses_a_missing_vault(tmp_path):
    from speechvault.errors import NotFoundError
    from tui.app import run

    with pytest.raises(NotFoundError):
        run(str(tmp_path / "missing.duckdb"))


# =============================================================================================
# snapshots (fake model, frozen display)
# =============================================================================================

#: the Textual version the SVGs in tests/__snapshots__ were made with: another version draws
#: some widgets differently, which is not a regression of ours
SNAPSHOT_TEXTUAL = "8.2.8"


@pytest.fixture
def snap_env(monkeypatch, fake_vault, fake_encoder, tmp_path):
    """cwd = a folder with fixed names (the query files and an 'audio' folder to ingest)."""
    import textual

    version = getattr(textual, "__version__", "?")
    if version != SNAPSHOT_TEXTUAL:
        pytest.skip(f"snapshots were made with textual {SNAPSHOT_TEXTUAL}, this is {version}: "
                    "regenerate them with --snapshot-update (and check the SVGs) or pin textual")
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SPEECHVAULT_PASSPHRASE", PW)
    monkeypatch.delenv("NO_COLOR", raising=False)
    cpo_copy(EXAMPLES / TARGET, work / "query-3dB.wav")
    write_wav(work / "unrelated.wav", tone_mix(4242, 0.8))
    audio = work / "audio"
    audio.mkdir()
    write_wav(audio / "new_a.wav", tone_mix(7, 0.4))
    write_wav(audio / "new_b.wav", tone_mix(8, 0.6))
    (audio / "broken.wav").write_bytes(b"this is not audio at all")
    vc = work / "vault"
    vc.mkdir()
    shutil.copy(fake_vault, vc / "demo.duckdb")
    return vc / "demo.duckdb", vault_cls_for(fake_encoder), audio


def _size_id(size):
    return f"{size[0]}x{size[1]}"


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_library(snap_compare, snap_env, size):
    vault, cls, _ = snap_env

    async def run_before(pilot):
        await settle(pilot)

    assert snap_compare(make_app(vault, cls), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_search_match(snap_compare, snap_env, size):
    vault, cls, _ = snap_env

    async def run_before(pilot):
        await settle(pilot)
        await set_field(pilot, "#query", "query-3dB.wav")
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(vault, cls, start_mode="search"), terminal_size=size,
                        run_before=run_before)


def test_snapshot_search_no_match(snap_compare, snap_env):
    vault, cls, _ = snap_env

    async def run_before(pilot):
        await settle(pilot)
        await set_field(pilot, "#tau", "0.05")
        await set_field(pilot, "#query", "unrelated.wav")
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(vault, cls, start_mode="search"), terminal_size=(80, 24),
                        run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_record(snap_compare, snap_env, size):
    vault, cls, _ = snap_env

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("enter")  # first recording; the env passphrase decrypts it
        await settle(pilot)

    assert snap_compare(make_app(vault, cls), terminal_size=size, run_before=run_before)


def test_snapshot_record_no_color(snap_compare, snap_env, monkeypatch):
    vault, cls, _ = snap_env
    monkeypatch.setenv("NO_COLOR", "1")

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(vault, cls), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_ingest_done_with_errors(snap_compare, snap_env, size):
    vault, cls, audio = snap_env

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#tree").focus()
        await pilot.press("a")
        await set_field(pilot, "#category", "tones")
        await pilot.press("enter")
        await settle(pilot)

    app = make_app(vault, cls, start_mode="ingest", browse_root=audio, read_only=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_passphrase_modal_wrong(snap_compare, snap_env, monkeypatch, size):
    vault, cls, _ = snap_env
    monkeypatch.delenv("SPEECHVAULT_PASSPHRASE")

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("enter", "d")
        await settle(pilot)
        await type_text(pilot, "nope")
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(vault, cls), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_error_modal(snap_compare, snap_env, size):
    vault, cls, _ = snap_env

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.show_error(AudioDecodeError("notes.wav: not an audio file (unknown format)"))
        await pilot.pause()

    assert snap_compare(make_app(vault, cls), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_busy_modal(snap_compare, snap_env, size):
    vault, cls, _ = snap_env

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.show_error(VaultBusyError(
            "the vault is locked by another process (a writer); try again when it is done"))
        await pilot.pause()

    assert snap_compare(make_app(vault, cls), terminal_size=size, run_before=run_before)


@async_test
async def test_search_excerpt_says_where_it_was_found(tmp_path, no_env_passphrase):
    """The real default model: a 4 s excerpt of a stored 20 s recording is found, and the
    verdict and the table say where it starts (issue 12)."""
    from hashing.audio import write_wav as write_samples
    from tests.test_excerpt import SR, long_recording

    rec, ex = tmp_path / "meeting.wav", tmp_path / "excerpt.wav"
    y = long_recording(900, 20.0)
    write_samples(rec, y, SR)
    write_samples(ex, y[int(12.5 * SR): int(16.5 * SR)], SR)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, PW, kdf_log2_n=10) as v:
        if v.encoder.windowing is None:
            pytest.skip("the default model has no identification windows")
        v.ingest([rec])
    app = make_app(path, Vault, start_mode="search")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await set_field(pilot, "#query", str(ex))
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert screen.result is not None and screen.result.matched
        verdict = str(screen.query_one("#verdict").render())
        assert "meeting.wav" in verdict and "found at 0:12.5" in verdict
        table = screen.query_one("#hits")
        assert table.get_row_at(0)[5] == "0:12.5"
        # matched by its evidence over the windows, which the verdict and the chart say (not
        # "BER < tau": the best window's BER may be above the whole-clip tau)
        assert "evidence" in verdict and "< τ" not in verdict
        assert table.get_row_at(0)[6] == "✓ evidence"
        chart = str(screen.query_one("#chart").render())
        rule = screen.result.excerpt_rule()
        assert "match by evidence" in chart and f"τ={rule.tau_window:.2f}" in chart


@async_test
async def test_passphrase_guesses_back_off_then_stop(fake_vault, fake_encoder, no_env_passphrase):
    """Each wrong passphrase costs an scrypt on the server: the session waits longer after each
    one and stops checking after the cap, saying so in one line (issue 15 item 5)."""
    from speechvault.guess_limit import GuessLimiter
    from tui.screens.modals import ErrorModal

    waits: list[float] = []
    app = make_app(fake_vault, vault_cls_for(fake_encoder))
    app.guess_limiter = GuessLimiter(max_failures=2, base_delay=1.0, sleep=waits.append)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, PassphraseModal)
        for _ in range(2):
            await type_text(pilot, "not the passphrase")
            await pilot.press("enter")
            await settle(pilot)
        assert waits == [1.0]  # none before the first check, 1 s before the second
        await type_text(pilot, PW)  # even the right one is not checked any more
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "wrong passphrases in this session" in app.screen.message
        assert not app.is_unlocked()


def test_guess_limiter_doubles_the_wait_and_resets_on_success():
    from speechvault.errors import TooManyAttemptsError
    from speechvault.guess_limit import GuessLimiter

    waits: list[float] = []
    g = GuessLimiter(max_failures=6, base_delay=1.0, max_delay=5.0, sleep=waits.append)
    for _ in range(6):
        g.before_attempt()
        g.record(False)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(TooManyAttemptsError):
        g.before_attempt()
    g2 = GuessLimiter(sleep=waits.append)
    g2.record(False)
    g2.record(True)
    assert g2.delay() == 0.0


# =============================================================================================
# issue 15, "Low": labels, help, ids, tau, stale hits, passphrase after ingest, fast keys
# =============================================================================================

def test_hash_bits_name_the_indexed_code():
    bits = np.ones(384, np.uint8)
    text = render_hash_bits(1, 4, bits, color=False, code="fingerprint").plain
    assert "fingerprint (K=384 bits" in text and "h2" not in text
    assert render_hash_bits(None, None, None, color=False, code="fingerprint").plain == \
        "fingerprint: -"


@async_test
async def test_record_of_a_fingerprint_vault_says_fingerprint(real_vault, no_env_passphrase):
    """The default model indexes its excerpt fingerprint, not the paper's h2: the record screen
    used to call it h2 whatever the vault held."""
    app = make_app(real_vault, vault_cls_for(None))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        rec = app.screen
        assert isinstance(rec, RecordScreen)
        assert "h1 || fingerprint" in str(rec.query_one("#code-title").render())
        assert "fingerprint (K=" in rec.query_one("#bits")._text(100).plain


@async_test
async def test_help_lists_the_keys_of_the_screen(vault_copy, fake_encoder, no_env_passphrase):
    app = make_app(vault_copy, vault_cls_for(fake_encoder))  # read-only: no Delete
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        modal = app.screen
        from tui.screens.modals import HelpModal

        assert isinstance(modal, HelpModal) and modal.screen_name == "library"
        keys = dict(modal.keys)
        assert keys["F3"] == "Search" and keys["/"] == "Filter" and keys["ctrl+q"] == "Quit"
        assert "Delete" not in keys.values()  # not offered where it does nothing
        assert "recordings in the vault" in str(modal.query_one("#help-about").render())
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, LibraryScreen)
        # in the search screen's query field "?" is a character (a glob), F1 still helps
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("question_mark")
        assert app.screen.query_one("#query").value == "?"
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpModal) and app.screen.screen_name == "search"


@async_test
async def test_search_shows_ids_and_no_tau_before_the_first_search(fake_vault, fake_encoder,
                                                                    tmp_path, no_env_passphrase):
    query = cpo_copy(EXAMPLES / TARGET, tmp_path / "q.wav")
    app = make_app(fake_vault, vault_cls_for(fake_encoder), start_mode="search")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        chart = screen.query_one("#chart")
        assert chart.tau is None
        assert "τ" not in chart.render().plain  # no made-up 0.26 line before a search
        await set_field(pilot, "#query", str(query))
        await pilot.press("enter")
        await settle(pilot)
        assert chart.tau == pytest.approx(screen.result.tau)
        table = screen.query_one("#hits")
        first = screen.rows[0]
        assert table.get_row_at(0)[1] == str(first.recording_id) and first.name == TARGET


@async_test
async def test_failed_search_clears_the_earlier_hits(fake_vault, fake_encoder, tmp_path,
                                                     no_env_passphrase):
    query = cpo_copy(EXAMPLES / TARGET, tmp_path / "q.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    app = make_app(fake_vault, vault_cls_for(fake_encoder), start_mode="search")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await set_field(pilot, "#query", str(query))
        await pilot.press("enter")
        await settle(pilot)
        assert screen.query_one("#hits").row_count > 0
        await set_field(pilot, "#query", str(bad))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        await pilot.press("escape")
        await settle(pilot)
        assert screen.query_one("#hits").row_count == 0 and screen.rows == []
        assert screen.result is None and screen.query_one("#chart").bars == ()
        assert "search failed" in str(screen.query_one("#verdict").render())


@async_test
async def test_passphrase_typed_for_an_ingest_is_kept_after_it(vault_copy, fake_encoder, tmp_path,
                                                               no_env_passphrase):
    src = tmp_path / "audio"
    src.mkdir()
    write_wav(src / "new.wav", tone_mix(11, 0.4))
    app = make_app(vault_copy, vault_cls_for(fake_encoder), start_mode="ingest", read_only=False,
                   browse_root=src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await set_field(pilot, "#source", str(src))
        await pilot.press("enter", "ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PassphraseModal)
        await type_text(pilot, PW)
        await pilot.press("enter")
        await settle(pilot)
        assert len(app.screen.report.added) == 1
        assert app.is_unlocked() and "unlocked" in app.sub_title
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press("enter")  # a record: decrypting asks for nothing
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)
        assert app.screen.query_one("#heatmap").spectrogram is not None


@async_test
async def test_keys_typed_during_a_screen_switch_reach_the_new_screen(fake_vault, fake_encoder,
                                                                      no_env_passphrase):
    """F3 then a path typed at once (the keys arrive before the search screen is built): the
    path lands in the search screen's query field, not in the library."""
    from textual import events

    app = make_app(fake_vault, vault_cls_for(fake_encoder))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        for key in ("f3", "a", "b", "c"):  # queued together, as a fast typist's are
            app._driver.send_message(events.Key(key, None if key == "f3" else key))
        await settle(pilot)
        assert isinstance(app.screen, SearchScreen)
        assert app.screen.query_one("#query").value == "abc"
        for key in ("f2", "f3", "d"):  # and to a screen built earlier
            app._driver.send_message(events.Key(key, "d" if key == "d" else None))
        await settle(pilot)
        assert isinstance(app.screen, SearchScreen)
        assert app.screen.query_one("#query").value == "abcd"
        assert app._screen_stacks["library"][0].query_one("#name-filter").value == ""


# =============================================================================================
# issue 15, item 4: the files a session may name (speechvault/path_policy.py)
# =============================================================================================

def test_path_completion_stays_inside_the_session_root(tmp_path):
    from speechvault.path_policy import PathPolicy
    from tui.suggest import complete_path

    root = tmp_path / "recordings"
    (root / "calls").mkdir(parents=True)
    (root / "calls" / "a.m4a").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    base = str(tmp_path) + "/"
    anywhere = PathPolicy.anywhere()
    assert complete_path(base + "se", policy=anywhere) == base + "secret.txt"
    policy = PathPolicy.under(root)
    assert complete_path(base + "se", policy=policy) is None              # outside the root
    assert complete_path(str(root) + "/c", policy=policy) == str(root) + "/calls/"
    assert complete_path(str(root) + "/calls/", policy=policy) == str(root) + "/calls/a.m4a"
    assert complete_path(str(root) + "/li", policy=policy) is None        # a symlink out of it
    assert not policy.allows(str(root) + "/../secret.txt")
    nothing = PathPolicy.nothing()
    assert complete_path("/etc/ss", policy=nothing) is None               # no server paths
    assert complete_path(str(root) + "/c", policy=nothing) is None


@async_test
async def test_ssh_session_names_no_server_files(fake_vault, fake_encoder, env_passphrase):
    """The ssh-serve TUI: a query path is refused (the query comes on stdin instead), nothing
    is completed, and export (a file written on the server) is refused."""
    from speechvault.path_policy import PathPolicy

    app = make_app(fake_vault, vault_cls_for(fake_encoder), start_mode="search",
                   paths=PathPolicy.nothing())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        field = screen.query_one("#query")
        assert await field.suggester.get_suggestion("/etc/ss") is None
        await set_field(pilot, "#query", str(EXAMPLES / TARGET))
        await pilot.press("enter")
        await settle(pilot)
        assert screen.result is None
        assert "ssh HOST search < query.wav" in str(screen.query_one("#verdict").render())
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press("enter")  # a record
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)  # no export modal


@async_test
async def test_ingest_is_bounded_by_the_root(vault_copy, fake_encoder, tmp_path, env_passphrase):
    from speechvault.path_policy import PathPolicy

    root = tmp_path / "mine"
    root.mkdir()
    write_wav(root / "ok.wav", tone_mix(21, 0.4))
    other = tmp_path / "other"
    other.mkdir()
    write_wav(other / "theirs.wav", tone_mix(22, 0.4))
    (root / "sneaky.wav").symlink_to(other / "theirs.wav")
    app = make_app(vault_copy, vault_cls_for(fake_encoder), start_mode="ingest", read_only=False,
                   browse_root=tmp_path, paths=PathPolicy.under(root))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#tree").path == root.resolve()  # not the folder above it
        await set_field(pilot, "#source", str(other))
        await pilot.press("enter")
        assert screen.sources == []
        assert "outside" in str(screen.query_one("#ingest-status").render())
        await set_field(pilot, "#source", str(root))
        await pilot.press("enter", "ctrl+s")
        await settle(pilot)
        r = screen.report
        assert [row.name for row in r.added] == ["ok.wav"]
        assert [Path(p).name for p, _ in screen.errors] == ["sneaky.wav"]


def test_ssh_serve_opens_the_tui_without_paths(monkeypatch, tmp_path):
    import cli

    seen = {}
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "")
    monkeypatch.setattr(cli, "_run_tui", lambda vault, **kw: seen.update(kw))
    cli.ssh_serve(tmp_path / "v.duckdb")
    assert seen == {"write": False, "key_file": None, "paths": "none"}


@async_test
async def test_ingest_warns_about_a_silent_recording(vault_copy, fake_encoder, tmp_path,
                                                     env_passphrase):
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "muted.wav", np.zeros(16000 * 2, np.float32), 16000)
    write_wav(src / "tone.wav", tone_mix(31, 0.6))
    app = make_app(vault_copy, vault_cls_for(fake_encoder), start_mode="ingest", read_only=False,
                   browse_root=src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        await set_field(pilot, "#source", str(src))
        await pilot.press("enter", "ctrl+s")
        await settle(pilot)
        assert len(screen.report.added) == 2
        assert [Path(p).name for p, _ in screen.warnings] == ["muted.wav"]
        shown = str(screen.query_one("#ingest-errors").render())
        assert "warnings (1)" in shown and "muted.wav" in shown and "silence" in shown
