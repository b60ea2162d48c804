"""The labels a vault handle holds between searches (store.labels, issue 13) are dropped
whenever the file may have changed under it, and never make a search send extra statements."""

from __future__ import annotations

import fcntl
import os
import shutil
import time

from store import access as _access
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, write_wav

PW = "label cache pw"
ENC = dict(K=128, C=3, seed=13)


def _vault(d, names):
    """A vault of the same six tones as any other made here, under the given file names: the
    same ids and codes, other labels."""
    d.mkdir()
    paths = []
    for i, name in enumerate(names):
        p = d / f"{name}.wav"
        write_wav(p, tone_mix(400 + 37 * i, 0.3))
        paths.append(p)
    with Vault.create(d / "v.duckdb", PW, encoder=FakeEncoder(**ENC), kdf_log2_n=10) as v:
        v.ingest(paths)
    return d / "v.duckdb", paths


def test_a_shared_reader_reads_the_labels_of_a_file_replaced_between_its_sessions(tmp_path):
    """A vault restored from another copy while a shared reader (an SSH server, the TUI) keeps
    its handle: same recording ids, other names. The next search names the new file's."""
    first, paths = _vault(tmp_path / "a", [f"first{i}" for i in range(6)])
    second, _ = _vault(tmp_path / "b", [f"second{i}" for i in range(6)])
    live = tmp_path / "live.duckdb"
    shutil.copyfile(first, live)
    with Vault.open(live, encoder=FakeEncoder(**ENC), shared=True, wait=30) as r:
        hit = r.search(paths[2], mode="traversal", top=1).hits[0]
        assert (hit.name, hit.distance) == ("first2.wav", 0)
        # a writer's turnstile: the reader closes its idle connection (store.access)
        fd = os.open(_access.lock_file(live), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            deadline = time.monotonic() + 30
            while r._access._idle is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert r._access._idle is None
            os.replace(second, live)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        again = r.search(paths[2], mode="traversal", top=1).hits[0]
        assert (again.recording_id, again.distance) == (hit.recording_id, 0)
        assert again.name == "second2.wav"


def test_labels_are_read_once_per_session_not_per_search(tmp_path):
    path, paths = _vault(tmp_path / "a", [f"r{i}" for i in range(6)])
    with Vault.open(path, encoder=FakeEncoder(**ENC)) as v:
        for p in paths:
            assert v.search(p, mode="traversal", top=3).hits[0].name == p.name
        # the first search's hits, then (second search) the count and every label
        assert v._label_cache.statements == 3


def test_own_ingest_and_delete_refresh_the_labels(tmp_path):
    path, paths = _vault(tmp_path / "a", [f"r{i}" for i in range(6)])
    extra = tmp_path / "extra.wav"
    write_wav(extra, tone_mix(1500, 0.3))
    with Vault.open(path, read_only=False, passphrase=PW, encoder=FakeEncoder(**ENC)) as v:
        assert v.search(paths[0], mode="traversal", top=1).hits[0].name == "r0.wav"
        held = v._label_cache
        rid = v.ingest([extra]).added[0].id
        assert v.search(extra, mode="traversal", top=1).hits[0].name == "extra.wav"
        assert v._label_cache is not held
        v.delete(rid)
        assert all(h.recording_id != rid for h in v.search(extra, mode="traversal").nearest)
