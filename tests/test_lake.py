"""The Parquet lake (issue 14): ``export-lake`` (layout, INT64 words, HMAC-named sealed objects,
incremental re-export, deletes, refusals) and searching it: the same hits (ids, distances,
windows, order, evidence) from the vault file, DuckDB on the lake, ClickHouse in-process (chDB)
and Spark local mode, per-window and excerpt statements. Core tests need core deps only; the
chDB and Spark ones skip with the reason when their extra is not installed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from speechvault import extras
from speechvault.errors import (InvalidInputError, LakeError, PassphraseRequiredError,
                                RuntimeMissingError)
from store import lake_export, schema
from store import search as _search
from store import sql_dialects as sd
from store.lake import LakeVault, open_uri
from store.lake_uri import is_lake_uri, parse_uri
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, write_wav

ROOT = Path(__file__).resolve().parents[1]
PW = "pw for lake tests"
MODES = ("auto", "two-stage", "traversal", "multi-probe")
HAVE_CHDB = not extras.missing(extras.EXTRAS["clickhouse"])
HAVE_SPARK = not extras.missing(extras.EXTRAS["spark"])
needs_chdb = pytest.mark.skipif(not HAVE_CHDB, reason="chdb not installed: "
                                "pip install 'speechvault[clickhouse]'")
needs_spark = pytest.mark.skipif(not HAVE_SPARK, reason="pyspark not installed: "
                                 "pip install 'speechvault[spark]' (and Java 17)")


def _signal(i: int) -> np.ndarray:
    return tone_mix(300 + i, 0.4 if i % 3 else 0.9)


def _make_vault(d: Path, n: int, enc: FakeEncoder) -> Vault:
    paths = []
    for i in range(n):
        p = d / f"s{i:02d}.wav"
        write_wav(p, _signal(i))
        paths.append(p)
    v = Vault.create(d / "v.duckdb", PW, encoder=enc, kdf_log2_n=10)
    assert len(v.ingest(paths).added) == n
    return v


@pytest.fixture(scope="module")
def enc() -> FakeEncoder:
    return FakeEncoder(K=384, C=4, seed=11, clip_seconds=0.5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, enc):
    """A 40-recording vault (fake encoder, per-window codes) and its lake."""
    d = tmp_path_factory.mktemp("lake")
    v = _make_vault(d, 40, enc)
    report = lake_export.export_lake(v, d / "lake")
    yield v, d / "lake", report
    v.close()


def _key(res) -> list[tuple]:
    return [(h.recording_id, h.distance, h.window, h.query_window, h.name, h.category,
             h.is_match, h.evidence, h.windows, h.offset) for h in res.nearest]


def _same_hits(v: Vault, lv: LakeVault, queries, tops=(1, 10)) -> int:
    compared = 0
    for q in queries:
        for mode in MODES:
            for top in tops:
                a, b = v.search(q, mode=mode, top=top), lv.search(q, mode=mode, top=top)
                assert _key(a) == _key(b), (lv.engine, mode, top)
                assert (a.matched, a.candidates, a.probed_categories) == \
                       (b.matched, b.candidates, b.probed_categories)
                compared += len(a.nearest)
    return compared


# --------------------------------------------------------------------------- dialects


def test_signed_words_keep_their_bits_and_distances():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**64, size=200, dtype=np.uint64)
    b = rng.integers(0, 2**64, size=200, dtype=np.uint64)
    a[:3] = [0, 2**63, 2**64 - 1]
    sa = sd.DUCKDB_LAKE.word_values(a)
    assert np.array_equal(np.array(sa, np.int64).view(np.uint64), a)
    con = duckdb.connect()
    lake = con.execute(f"SELECT {sd.DUCKDB_LAKE.hamming('x', 'y')} FROM "
                       "(SELECT unnest($1::BIGINT[]) AS x, unnest($2::BIGINT[]) AS y)",
                       [sa, sd.DUCKDB_LAKE.word_values(b)]).fetchall()
    expect = [bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b)]
    assert [r[0] for r in lake] == expect


def test_the_three_spellings_of_one_statement():
    duck = _search.rows_sql(128, 2)  # a vault file: one HUGEINT word (format 6)
    assert "bit_count(xor(c.w0, $1::HUGEINT))" in duck and "LIMIT $4" in duck
    lake = _search.rows_sql(128, 2, sd.DUCKDB_LAKE)  # the lake: two 64-bit words
    assert "bit_count(xor(c.w0, $1::BIGINT))::INTEGER" in lake and "LIMIT $5" in lake
    ch = _search.rows_sql(128, 2, sd.CLICKHOUSE)
    assert "bitCount(bitXor(c.w0, {p1:Int64}))" in ch and "{p4:Int16}" in ch and "$" not in ch
    spark = _search.rows_sql(128, 2, sd.SPARK)
    assert "bit_count(c.w0 ^ CAST(:p1 AS BIGINT))" in spark and "LIMIT :p5" in spark
    assert sd.SPARK.bind([1, 2]) == {"p1": 1, "p2": 2}
    assert isinstance(sd.CLICKHOUSE.bind([1]), sd.NamedParams)
    assert sd.DUCKDB.bind([1, 2]) == [1, 2]


def test_excerpt_translation_refuses_what_it_cannot_spell():
    with pytest.raises(ValueError, match="no clickhouse spelling"):
        sd.excerpt_sql_for(sd.CLICKHOUSE, "SELECT list_distinct($1::INTEGER[])")


def test_lake_uris():
    assert parse_uri("lake:/a/b") == ("duckdb", "/a/b", None)
    assert parse_uri("clickhouse:/a") == ("clickhouse", "/a", None)
    assert parse_uri("lake://a/b") == ("duckdb", "/a/b", None)
    with pytest.raises(LakeError, match="server URI is not supported"):
        parse_uri("clickhouse://db.example:9000")
    assert parse_uri("spark:rel/l") == ("spark", "rel/l", None)
    assert parse_uri("spark://127.0.0.1:7077/x/l") == ("spark", "/x/l", "spark://127.0.0.1:7077")
    assert is_lake_uri("lake:x") and not is_lake_uri("/tmp/v.duckdb")
    with pytest.raises(LakeError):
        parse_uri("lake:")


# --------------------------------------------------------------------------- export


def test_layout_manifest_and_int64_words(exported):
    v, dest, report = exported
    m = json.loads((dest / "manifest.json").read_text())
    assert (m["format"], m["model_sha256"], m["K"], m["C"], m["class_names"], m["tau"],
            m["cipher"]) == ("speechvault-lake", v.model_sha256, v.K, v.C, v.class_names,
                             v.tau, v.cipher)
    assert m["key_wrap"] == v._key_wrap  # the passphrase-wrapped key, nothing else
    cats = sorted(int(r[0]) for r in v._query("SELECT DISTINCT category FROM codes"))
    parts = sorted(p.name for p in (dest / "codes" / f"model={v.model_sha256[:12]}").iterdir())
    assert parts == [f"category={c}" for c in cats] and report.partitions_written == cats
    con = duckdb.connect()
    glob = str(dest / "codes" / "*" / "*" / "*.parquet")
    schema_rows = dict(con.execute("SELECT name, type FROM parquet_schema($1)", [glob]).fetchall())
    assert all(schema_rows[c] == "INT64" for c in schema.code_word_columns(v.K))
    assert {r[0] for r in con.execute("SELECT DISTINCT compression FROM parquet_metadata($1)",
                                      [glob]).fetchall()} == {"UNCOMPRESSED"}
    # the words hold the vault's bits (the code's 64-bit words in two's complement; the vault
    # stores two in each HUGEINT since format 6), row for row
    cols = ", ".join(schema.code_word_columns(v.K))
    lake_rows = con.execute(f"SELECT recording_id, win, {cols} FROM read_parquet($1) "
                            "ORDER BY recording_id, win", [glob]).fetchall()
    vault_rows = v._query(f"SELECT recording_id, win, "
                          f"{', '.join(schema.code_words_sql(v.K, signed=True))} FROM codes "
                          "ORDER BY recording_id, win")
    assert len(lake_rows) == len(vault_rows) == report.windows
    assert any(w < 0 for r in lake_rows for w in r[2:])  # high bit set somewhere
    assert lake_rows == vault_rows
    rec_cols = [r[0] for r in con.execute("SELECT name FROM parquet_schema($1)",
                                          [str(dest / "recordings" / "recordings.parquet")]).fetchall()]
    assert "blob" not in rec_cols and "sha256" in rec_cols


def test_sealed_objects_are_byte_identical_under_keyed_names(exported):
    v, dest, _ = exported
    v.unlock(PW)
    names = set()
    for rid, sha, blob in v._query("SELECT id, sha256, blob FROM recordings"):
        name = lake_export.object_name(v._master, sha)
        assert name != sha and sha not in name
        assert (dest / "objects" / name).read_bytes() == bytes(blob)
        names.add(name)
    assert {p.name for p in (dest / "objects").iterdir()} == names
    listing = " ".join(str(p) for p in dest.rglob("*"))
    assert not any(sha in listing for (sha,) in v._query("SELECT sha256 FROM recordings"))


def test_reexport_of_an_unchanged_vault_writes_nothing(exported):
    v, dest, _ = exported
    v.unlock(PW)
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    r = lake_export.export_lake(v, dest)
    assert (r.partitions_written, r.partitions_removed, r.recordings_written,
            r.objects_written, r.objects_removed, r.bytes_written) == ([], [], False, 0, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == before


def test_incremental_ingest_and_delete_propagate(tmp_path, enc):
    v = _make_vault(tmp_path, 12, enc)
    dest = tmp_path / "lake"
    first = lake_export.export_lake(v, dest)
    write_wav(tmp_path / "new.wav", _signal(99))
    (new,) = v.ingest([tmp_path / "new.wav"]).added
    new_id = new.id
    new_cats = sorted({int(c) for c in v.codes_of(new_id).category})
    r = lake_export.export_lake(v, dest)
    assert r.partitions_written == new_cats  # only the touched categories
    assert r.partitions_kept == len(first.partitions_written) - len(new_cats) + \
        len(set(new_cats) - set(first.partitions_written))
    assert (r.objects_written, r.objects_removed, r.recordings_written) == (1, 0, True)
    victim = v.list()[0]
    victim_cats = sorted({int(c) for c in v.codes_of(victim.id).category})
    name = lake_export.object_name(v._master, victim.sha256)
    assert (dest / "objects" / name).exists()
    v.delete(victim.id)
    r = lake_export.export_lake(v, dest)
    assert r.objects_removed == 1 and not (dest / "objects" / name).exists()
    assert set(r.partitions_written) | set(r.partitions_removed) == set(victim_cats)
    with LakeVault.open_lake(dest) as lv:
        assert [x.id for x in lv.list()] == [x.id for x in v.list()]
        assert lv.info().windows == v.info().windows
        q = v.encode_query(_signal(0))
        assert _key(lv.search(q, mode="traversal", top=50)) == \
            _key(v.search(q, mode="traversal", top=50))
    v.close()


def test_export_needs_the_passphrase_and_refuses_foreign_folders(tmp_path, enc):
    v = _make_vault(tmp_path, 3, enc)
    v.lock()
    with pytest.raises(PassphraseRequiredError):
        lake_export.export_lake(v, tmp_path / "lake")
    assert not (tmp_path / "lake").exists()
    v.unlock(PW)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not a speechvault lake"):
        lake_export.export_lake(v, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    lake_export.export_lake(v, tmp_path / "lake")
    (tmp_path / "second").mkdir()
    w = _make_vault(tmp_path / "second", 2, enc)
    with pytest.raises(InvalidInputError, match="another vault"):
        lake_export.export_lake(w, tmp_path / "lake")
    v.close()
    w.close()


def test_encrypted_index_is_refused_before_the_passphrase(tmp_path, monkeypatch, enc):
    v = _make_vault(tmp_path, 2, enc)
    v.close()
    monkeypatch.setattr(Vault, "index_is_encrypted", staticmethod(lambda path: True))
    asked = []
    with pytest.raises(InvalidInputError) as err:
        lake_export.export_lake_file(tmp_path / "v.duckdb", tmp_path / "lake",
                                     lambda: asked.append(1) or PW)
    msg = str(err.value)
    assert "\n" not in msg and "encrypt" in msg and "in the clear" in msg
    assert not asked and not (tmp_path / "lake").exists()


# --------------------------------------------------------------------------- search


def test_duckdb_lake_same_hits_as_the_vault(exported):
    v, dest, _ = exported
    queries = [v.encode_query(_signal(i)) for i in (0, 7, 31)]
    queries.append(v.encode_query(np.concatenate([_signal(3), _signal(4)])))  # 2+ windows
    with open_uri(f"lake:{dest}") as lv:
        assert lv.engine == "duckdb"
        assert _same_hits(v, lv, queries, tops=(1, 5, 100)) > 50


def test_duckdb_lake_grouped_fallback_same_hits(exported, monkeypatch):
    """The exact GROUP BY statement (taken past GROUPED_FALLBACK_ROWS) in the lake dialect."""
    v, dest, _ = exported
    monkeypatch.setattr(_search, "GROUPED_FALLBACK_ROWS", 0)
    with LakeVault.open_lake(dest) as lv:
        assert _same_hits(v, lv, [v.encode_query(_signal(5))]) > 5


def test_duckdb_lake_prunes_categories(exported):
    v, dest, _ = exported
    with LakeVault.open_lake(dest) as lv:
        plan = "\n".join(r[1] for r in lv._db().execute(
            "EXPLAIN ANALYZE " + _search.count_sql(1, sd.DUCKDB_LAKE), [1]).fetchall())
    n_files = len(list((dest / "codes").rglob("*.parquet")))
    assert f"Scanning Files: 1/{n_files}" in plan and n_files > 1


def test_lake_export_opens_sealed_objects(exported):
    v, dest, _ = exported
    v.unlock(PW)
    with LakeVault.open_lake(dest, passphrase=PW) as lv:
        for row in lv.list()[:5]:
            data = lv.export(row.id)
            assert data == v.export(row.id)
            assert hashlib.sha256(data).hexdigest() == row.sha256


@needs_chdb
def test_clickhouse_lake_same_hits_as_the_vault(exported, monkeypatch):
    v, dest, _ = exported
    queries = [v.encode_query(_signal(i)) for i in (1, 8)]
    with open_uri(f"clickhouse:{dest}") as lv:
        assert lv.engine == "clickhouse"
        assert _same_hits(v, lv, queries, tops=(1, 100)) > 20
        monkeypatch.setattr(_search, "GROUPED_FALLBACK_ROWS", 0)
        assert _same_hits(v, lv, queries[:1], tops=(3,)) > 3


@needs_chdb
def test_clickhouse_reads_only_the_probed_partition(exported):
    v, dest, _ = exported
    with open_uri(f"clickhouse:{dest}") as lv:
        out = lv._db().engine._session.query(
            _search.count_sql(1, sd.CLICKHOUSE), "JSONCompact", params={"p1": 2})
        doc = json.loads(out.bytes())
    (n,), = doc["data"]
    assert n == v._query("SELECT count(*) FROM codes WHERE category = 2")[0][0] > 0
    assert doc["statistics"]["rows_read"] == n < v.info().windows


@pytest.mark.slow
@needs_spark
def test_spark_local_lake_same_hits_as_the_vault(exported):
    v, dest, _ = exported
    with open_uri(f"spark:{dest}") as lv:
        assert lv.engine == "spark"
        assert _same_hits(v, lv, [v.encode_query(_signal(2))], tops=(10,)) > 5


def test_missing_extra_is_one_line(exported, monkeypatch):
    _, dest, _ = exported
    monkeypatch.setattr(extras, "missing", lambda modules: list(modules))
    with pytest.raises(RuntimeMissingError) as err:
        open_uri(f"clickhouse:{dest}")
    assert "pip install 'speechvault[clickhouse]'" in str(err.value) and "\n" not in str(err.value)


def test_lake_modules_import_no_engine():
    code = ("import sys, store.lake, store.lake_export, store.sql_dialects; "
            "print(sorted(m for m in ('chdb', 'pyspark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# --------------------------------------------------------------------------- excerpt (real model)


@pytest.fixture(scope="module")
def excerpt_lake(tmp_path_factory):
    """Three 12 s speech-like recordings coded by the shipped model, and their lake."""
    from hashing.audio import write_wav as write
    from tests.test_excerpt import SR, long_recording

    d = tmp_path_factory.mktemp("exlake")
    recs = {f"rec{i}.wav": long_recording(200 + i, 12.0) for i in range(3)}
    for name, y in recs.items():
        write(d / name, y, SR)
    v = Vault.create(d / "v.duckdb", PW, kdf_log2_n=10)
    if v.encoder.windowing is None:
        v.close()
        pytest.skip("the default model has no identification windows")
    v.ingest([d / n for n in recs])
    lake_export.export_lake(v, d / "lake")
    clips = [recs["rec1.wav"][int(3.1 * SR): int(6.1 * SR)],
             recs["rec2.wav"][int(0.4 * SR): int(2.4 * SR)],
             long_recording(999, 3.0)]  # not in the vault
    queries = [v.encode_query(y) for y in clips]
    for i, y in enumerate(clips):  # the same excerpts as files, for batch search
        write(d / f"query{i}.wav", y, SR)
    yield v, d / "lake", queries
    v.close()


def _excerpt_files(dest: Path) -> list[str]:
    """The query files ``excerpt_lake`` wrote beside its lake."""
    return [str(dest.parent / f"query{i}.wav") for i in range(3)]


def _excerpt_same(v, lv, queries, monkeypatch, keys: bool) -> int:
    if keys:  # the hash-join candidates (large vaults) instead of the scan
        orig = Vault._excerpt_rule
        monkeypatch.setattr(Vault, "_excerpt_rule", lambda self: dataclasses.replace(
            orig(self), candidates="keys", key_bands=8))
    n = _same_hits(v, lv, queries, tops=(10,))
    monkeypatch.undo()
    return n


@pytest.mark.parametrize("keys", [False, True], ids=["scan", "keys"])
def test_excerpt_search_same_on_duckdb_lake(excerpt_lake, monkeypatch, keys):
    v, dest, queries = excerpt_lake
    with LakeVault.open_lake(dest) as lv:
        assert _excerpt_same(v, lv, queries, monkeypatch, keys) > 0
        res = lv.search(queries[0])
        assert res.matched and res.hits[0].name == "rec1.wav"
        assert res.hits[0].offset == pytest.approx(3.1, abs=0.05)


@needs_chdb
@pytest.mark.parametrize("keys", [False, True], ids=["scan", "keys"])
def test_excerpt_search_same_on_clickhouse(excerpt_lake, monkeypatch, keys):
    v, dest, queries = excerpt_lake
    with LakeVault.open_lake(dest, engine="clickhouse") as lv:
        assert _excerpt_same(v, lv, queries, monkeypatch, keys) > 0


@pytest.mark.slow
@needs_spark
def test_excerpt_search_same_on_spark_local(excerpt_lake, monkeypatch):
    v, dest, queries = excerpt_lake
    with LakeVault.open_lake(dest, engine="spark") as lv:
        assert _excerpt_same(v, lv, queries[:2], monkeypatch, keys=False) > 0


# --------------------------------------------------------------------------- excerpt batches


def _keys_rule(monkeypatch, keys: bool) -> None:
    """Candidates by 16-bit slices (the path of large vaults) instead of the scan."""
    if keys:
        orig = Vault._excerpt_rule
        monkeypatch.setattr(Vault, "_excerpt_rule", lambda self: dataclasses.replace(
            orig(self), candidates="keys", key_bands=8))


def _excerpt_batch_same(v: Vault, lv: LakeVault, paths: list[str], monkeypatch,
                        modes=MODES) -> int:
    """``batch.search_queries`` on a lake whose engine batches excerpt searches: ONE
    statement (``rows_joined``) for the whole batch and no statement per search, and per query
    the vault file's hits answering it alone (ids, distances, evidence, offsets, order)."""
    from speechvault import batch

    monkeypatch.setattr(LakeVault, "EXCERPT_BATCH_ENGINES", (lv.engine,))
    con = lv._db()
    engine = con.engine if lv.engine != "duckdb" else None
    calls = {"one": 0, "joined": 0}
    if engine is not None:  # every statement the engine runs goes through one of these two
        rows, joined = engine.rows, engine.rows_joined
        monkeypatch.setattr(engine, "rows", lambda *a, **k: (calls.__setitem__(
            "one", calls["one"] + 1), rows(*a, **k))[1])
        monkeypatch.setattr(engine, "rows_joined", lambda *a, **k: (calls.__setitem__(
            "joined", calls["joined"] + 1), joined(*a, **k))[1])
    else:
        single = Vault._excerpt_rows
        monkeypatch.setattr(Vault, "_excerpt_rows", lambda *a, **k: (calls.__setitem__(
            "one", calls["one"] + 1), single(*a, **k))[1])
        from store import lake_engines

        joined = lake_engines.DuckDBTables.rows_joined
        monkeypatch.setattr(lake_engines.DuckDBTables, "rows_joined", lambda *a, **k: (
            calls.__setitem__("joined", calls["joined"] + 1), joined(*a, **k))[1])
    compared = 0
    for mode in modes:
        calls.update(one=0, joined=0)
        outs = list(batch.search_queries(lv, paths, mode=mode, top=10))
        assert calls == {"one": 0, "joined": 1}, (lv.engine, mode, calls)
        if lv.engine == "spark":
            assert len(engine.last_jobs) == 1, (mode, engine.last_jobs)  # one Spark job
        for p, o in zip(paths, outs):
            assert o.error is None, o.error
            alone = v.search(Path(p), mode=mode, top=10)
            assert _key(o.result) == _key(alone), (lv.engine, mode, p)
            assert (o.result.matched, o.result.candidates, o.result.fell_back) == \
                   (alone.matched, alone.candidates, alone.fell_back)
            compared += len(alone.nearest)
    monkeypatch.undo()
    return compared


@pytest.mark.parametrize("keys", [False, True], ids=["scan", "keys"])
@pytest.mark.parametrize("engine", ["duckdb", pytest.param("clickhouse", marks=needs_chdb)])
def test_excerpt_batch_statement_gives_each_search_its_own_rows(excerpt_lake, monkeypatch,
                                                                engine, keys):
    """The one batch statement returns, per request, exactly the rows of that request's own
    excerpt statement on the vault file (every mode's request of every query, at once)."""
    from store import excerpt_batch

    v, dest, queries = excerpt_lake
    _keys_rule(monkeypatch, keys)
    with LakeVault.open_lake(dest, engine=engine) as lv:
        requests = [r for q in queries for m in MODES
                    for r in excerpt_batch.requests_for(lv, q, m, 2)]
        assert len(set(requests)) >= 2 * len(queries)  # categories and every row, per query
        answers, _ = excerpt_batch.run_batch(lv._batch_runner(), lv.K, lv._excerpt_rule(),
                                             lv._dialect, requests)
    compared = 0
    for q in queries:
        for m in MODES:
            cats, _, keyed, bands = v._excerpt_plan(q, m, 2)
            assert keyed is keys
            alone, _ = v._excerpt_rows(v._db(), q, cats, keyed, bands, v._excerpt_rule())
            key = excerpt_batch.request_key(q, cats, keyed, bands)
            assert answers[key] == [tuple(int(x) for x in r) for r in alone], (m, keys)
            compared += len(alone)
    assert compared > 0


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("clickhouse", marks=needs_chdb)])
def test_excerpt_conformance_vault_duckdb_lake_clickhouse(excerpt_lake, monkeypatch, engine):
    """Excerpt queries (the default model's) give the vault file's hits -- ids, distances,
    evidence, offsets, order -- on the lake, one search at a time and as one batch statement."""
    v, dest, queries = excerpt_lake
    with LakeVault.open_lake(dest, engine=engine) as lv:
        assert _same_hits(v, lv, queries, tops=(1, 10)) > 0
        assert _excerpt_batch_same(v, lv, _excerpt_files(dest), monkeypatch) > 0


@pytest.mark.slow
@needs_spark
def test_spark_local_excerpt_batch_is_one_job_with_the_same_hits(excerpt_lake, monkeypatch):
    v, dest, _ = excerpt_lake
    with open_uri(f"spark:{dest}") as lv:
        assert _excerpt_batch_same(v, lv, _excerpt_files(dest), monkeypatch) > 0


# --------------------------------------------------------------------------- command line


def _without_timings(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "timings"}


def test_cli_export_lake_then_search_it_like_the_vault(tmp_path):
    from tests.test_cli import assert_user_error, digit_clips, run_cli, sha256

    v, lake = tmp_path / "v.duckdb", tmp_path / "lake"
    clips = digit_clips()[:8]
    assert run_cli("init", v, "--kdf-log2n", "10", passphrase=PW + "!").returncode == 0
    assert run_cli("ingest", v, *clips, passphrase=PW + "!").returncode == 0
    r = run_cli("export-lake", v, lake, passphrase=PW + "!")
    assert r.returncode == 0, r.stderr
    assert "objects written 8" in r.stdout
    r = run_cli("export-lake", v, lake, "--json", passphrase=PW + "!")
    again = json.loads(r.stdout)
    assert (again["partitions_written"], again["objects_written"]) == ([], 0)
    for q in (clips[2], clips[5]):
        a = run_cli("search", v, q, "--json")
        b = run_cli("search", f"lake:{lake}", q, "--json")
        assert a.returncode == b.returncode == 0, b.stderr
        da, db = json.loads(a.stdout), json.loads(b.stdout)
        assert da["matched"] and _without_timings(da) == _without_timings(db)
    # a batch: on the lake, the excerpt searches of every query run as one statement
    a = run_cli("search", v, *clips[:4], "--json")
    b = run_cli("search", f"lake:{lake}", *clips[:4], "--json")
    assert a.returncode == b.returncode == 0, b.stderr
    la, lb = ([_without_timings(json.loads(x)) for x in r.stdout.splitlines()] for r in (a, b))
    assert len(la) == 4 and all(d["matched"] for d in la) and la == lb
    out = tmp_path / "out"
    r = run_cli("search", f"lake:{lake}", clips[3], "--decrypt-to", out, passphrase=PW + "!")
    assert r.returncode == 0, r.stderr
    (written,) = list(out.iterdir())  # named <id>_<name>, as from the vault file
    assert written.name.endswith(clips[3].name) and sha256(written) == sha256(clips[3])
    assert_user_error(run_cli("search", f"lake:{tmp_path / 'nowhere'}", clips[0]),
                      contains="no such lake")
    assert_user_error(run_cli("export-lake", v, tmp_path / "nodir" / "lake", passphrase=PW + "!"),
                      contains="no such directory")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spark_cluster(tmp_path):
    """A Spark standalone master and two 1-core workers on 127.0.0.1 (stopped afterwards)."""
    import os
    import signal
    import socket
    import time

    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(tmp_path),
           "SPARK_WORKER_DIR": str(tmp_path / "work")}
    port = _free_port()
    master = f"spark://127.0.0.1:{port}"
    procs = [subprocess.Popen(
        [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(_free_port())], env=env,
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.log", "w"), start_new_session=True)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(1)
    for i in range(2):
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
             "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()), master],
            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker{i}.log", "w"),
            start_new_session=True))
    yield master
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


@pytest.mark.slow
@needs_spark
def test_spark_standalone_cluster_same_hits(exported, spark_cluster):
    v, dest, _ = exported
    with open_uri(f"{spark_cluster}{dest.absolute()}") as lv:
        assert lv.engine == "spark"
        assert lv._db().engine._spark.sparkContext.master == spark_cluster
        assert _same_hits(v, lv, [v.encode_query(_signal(6))], tops=(10,)) > 5


# --------------------------------------------------------------------------- Spark batch


def _spark_batch_same_hits(v: Vault, lv: LakeVault, tmp_path: Path, modes=MODES) -> int:
    """``batch.search_queries`` on a Spark lake: ONE joined statement per batch (no per-window
    statement), and per query the same hits as the vault file answering it alone."""
    from speechvault import batch

    paths = []
    for i in (1, 6, 13, 22, 37, 77):  # 77: not in the vault
        p = tmp_path / f"q{i}.wav"
        write_wav(p, _signal(i))
        paths.append(str(p))
    lv.encode_query = v.encode_query  # the fake encoder of the vault (no model in the lake)
    engine = lv._db().engine
    calls = {"rows": 0, "joined": 0}
    rows, joined = engine.rows, engine.rows_joined

    def counting(name, fn):
        def wrapped(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapped

    engine.rows, engine.rows_joined = counting("rows", rows), counting("joined", joined)
    compared = 0
    try:
        for mode in modes:
            calls.update(rows=0, joined=0)
            outs = list(batch.search_queries(lv, paths, mode=mode, top=10))
            assert calls == {"rows": 0, "joined": 1}, (mode, calls)
            assert len(engine.last_jobs) == 1, (mode, engine.last_jobs)  # one Spark job
            for p, o in zip(paths, outs):
                assert o.error is None, o.error
                alone = v.search(Path(p), mode=mode, top=10)
                assert _key(o.result) == _key(alone), (mode, p)
                assert (o.result.matched, o.result.candidates, o.result.fell_back) == \
                       (alone.matched, alone.candidates, alone.fell_back)
                compared += len(alone.nearest)
    finally:
        engine.rows, engine.rows_joined = rows, joined
    return compared


@pytest.mark.slow
@needs_spark
def test_spark_local_batch_is_one_statement_with_the_same_hits(exported, tmp_path):
    v, dest, _ = exported
    with open_uri(f"spark:{dest}") as lv:
        assert _spark_batch_same_hits(v, lv, tmp_path) > 20


@pytest.mark.slow
@needs_spark
def test_spark_standalone_cluster_excerpt_batch_same_hits(excerpt_lake, spark_cluster,
                                                          monkeypatch):
    v, dest, _ = excerpt_lake
    with open_uri(f"{spark_cluster}{dest.absolute()}") as lv:
        assert lv._db().engine._spark.sparkContext.master == spark_cluster
        assert _excerpt_batch_same(v, lv, _excerpt_files(dest), monkeypatch,
                                   modes=("auto", "two-stage")) > 0


@pytest.mark.slow
@needs_spark
def test_spark_standalone_cluster_batch_same_hits(exported, spark_cluster, tmp_path):
    v, dest, _ = exported
    with open_uri(f"{spark_cluster}{dest.absolute()}") as lv:
        assert lv._db().engine._spark.sparkContext.master == spark_cluster
        assert _spark_batch_same_hits(v, lv, tmp_path, modes=("auto", "traversal")) > 10
