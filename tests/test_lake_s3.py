"""A lake in object storage (issue 14): ``export-lake VAULT s3://bucket/prefix`` and
``search lake:s3://bucket/prefix``, against a real S3-compatible server on loopback (moto's
``moto_server``, extra ``[lake-test]``): the same hits as the vault file, sealed objects that
open, an unchanged re-export that writes nothing, ingests and deletes that propagate.

The server tests are slow-marked (they start a server and DuckDB reads every file over HTTP);
the URL, environment and refusal tests run in the normal suite with core deps only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechvault import extras
from speechvault.errors import LakeError, RuntimeMissingError
from store import lake_export, lake_s3
from store.lake import open_uri
from tests.test_lake import PW, _key, _make_vault, _same_hits, _signal, _without_timings
from tests.fakes import FakeEncoder, write_wav

MOTO = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
    "moto_server")


def _have_httpfs() -> bool:
    from store.encrypted_index import httpfs_extension_path

    return httpfs_extension_path() is not None


needs_s3 = pytest.mark.skipif(
    MOTO is None or not extras.installed("lake") or not _have_httpfs(),
    reason="needs the [lake] extra (boto3, DuckDB's httpfs wheel for this DuckDB) and "
           "moto_server: pip install 'speechvault[lake,lake-test]'")


# --------------------------------------------------------------------------- no server needed


def test_s3_urls():
    loc = lake_s3.parse_s3("s3://bucket/a/b/")
    assert (loc.bucket, loc.prefix) == ("bucket", "a/b")
    assert loc.url("manifest.json") == "s3://bucket/a/b/manifest.json"
    assert loc.key("objects/x") == "a/b/objects/x"
    whole = lake_s3.parse_s3("s3://bucket")
    assert whole.key("manifest.json") == "manifest.json" and whole.url() == "s3://bucket"
    for bad in ("s3://", "s3:///x", "s3://b/../x", "s3://b/x//y"):
        with pytest.raises(LakeError):
            lake_s3.parse_s3(bad)


def test_duckdb_secret_from_the_standard_environment(monkeypatch):
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "se'cret")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    sql = lake_s3._secret_sql(lake_s3.s3_env())
    assert "ENDPOINT '127.0.0.1:9000'" in sql and "USE_SSL false" in sql
    assert "URL_STYLE 'path'" in sql and "REGION 'eu-west-3'" in sql
    assert "KEY_ID 'AKID'" in sql and "SECRET 'se''cret'" in sql  # quoted, not cut
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.example.org")
    assert "USE_SSL true" in lake_s3._secret_sql(lake_s3.s3_env())
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert "ENDPOINT" not in lake_s3._secret_sql(lake_s3.s3_env())  # AWS itself


def test_missing_lake_extra_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_boto(name, *a, **kw):
        if name == "boto3" or name.startswith("botocore"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_boto)
    with pytest.raises(RuntimeMissingError, match=r"speechvault\[lake\]") as e:
        lake_s3.s3_client()
    assert "\n" not in str(e.value)


def test_other_engines_refuse_an_s3_lake_in_one_line():
    with pytest.raises(LakeError, match="only lake:s3://") as e:
        open_uri("clickhouse:s3://bucket/lake")
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- a real S3 server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto_server on 127.0.0.1 (stopped afterwards); yields its endpoint URL."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "moto_server exited"
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The standard AWS variables pointing at the loopback server, and a fresh bucket."""
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    bucket = f"lake-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    lake_s3.s3_client().create_bucket(Bucket=bucket)
    return env, bucket


def _keys(bucket: str, prefix: str) -> dict[str, str]:
    """key -> ETag of every object under ``prefix``."""
    s3 = lake_s3.s3_client()
    out, token = {}, None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix,
                                  **({"ContinuationToken": token} if token else {}))
        out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


@pytest.mark.slow
@needs_s3
def test_s3_lake_same_hits_incremental_and_deletes(tmp_path, s3_env):
    _, bucket = s3_env
    enc = FakeEncoder(K=384, C=4, seed=11, clip_seconds=0.5)
    v = _make_vault(tmp_path, 12, enc)
    uri = f"s3://{bucket}/archive/lake"
    first = lake_export.export_lake(v, uri)
    assert first.objects_written == 12 and first.partitions_written
    keys = _keys(bucket, "archive/lake/")
    assert "archive/lake/manifest.json" in keys
    assert any(k.startswith("archive/lake/codes/model=") and "/category=" in k for k in keys)
    shas = [r.sha256 for r in v.list()]
    assert not any(sha in k for k in keys for sha in shas)  # keyed object names only

    with open_uri(f"lake:{uri}", passphrase=PW) as lv:
        assert lv.engine == "duckdb" and lv.info().path == uri
        assert lv.info().size_bytes == sum(
            o["Size"] for o in lake_s3.s3_client().list_objects_v2(
                Bucket=bucket, Prefix="archive/lake/")["Contents"])
        assert _same_hits(v, lv, [v.encode_query(_signal(i)) for i in (1, 7)]) > 0
        rec = v.list()[3]
        assert lv.export(rec.id) == v.export(rec.id)

    again = lake_export.export_lake(v, uri)  # unchanged: nothing written, nothing moved
    assert (again.partitions_written, again.objects_written, again.recordings_written,
            again.bytes_written) == ([], 0, False, 0)
    assert _keys(bucket, "archive/lake/") == keys

    write_wav(tmp_path / "new.wav", _signal(99))
    (new,) = v.ingest([tmp_path / "new.wav"]).added
    victim = v.list()[0]
    gone = lake_export.object_name(v._master, victim.sha256)
    v.delete(victim.id)
    r = lake_export.export_lake(v, uri)
    assert (r.objects_written, r.objects_removed, r.recordings_written) == (1, 1, True)
    touched = {int(c) for c in v.codes_of(new.id).category}
    assert set(r.partitions_written) <= touched | set(first.partitions_written)
    now = _keys(bucket, "archive/lake/")
    assert f"archive/lake/objects/{gone}" not in now
    with open_uri(f"lake:{uri}") as lv:
        assert [x.id for x in lv.list()] == [x.id for x in v.list()]
        assert lv.info().windows == v.info().windows
        q = v.encode_query(_signal(99))
        assert _key(lv.search(q, mode="traversal", top=50)) == \
            _key(v.search(q, mode="traversal", top=50))
    v.close()


@pytest.mark.slow
@needs_s3
def test_s3_refusals_are_one_line(tmp_path, s3_env):
    _, bucket = s3_env
    enc = FakeEncoder(K=384, C=4, seed=11, clip_seconds=0.5)
    v = _make_vault(tmp_path, 2, enc)
    from speechvault.errors import InvalidInputError, NotFoundError

    with pytest.raises(NotFoundError, match="no such bucket"):
        lake_export.export_lake(v, "s3://no-such-bucket-here/lake")
    lake_s3.s3_client().put_object(Bucket=bucket, Key="other/readme.txt", Body=b"x")
    with pytest.raises(InvalidInputError, match="not empty"):
        lake_export.export_lake(v, f"s3://{bucket}/other")
    with pytest.raises(NotFoundError, match="no such lake"):
        open_uri(f"lake:s3://{bucket}/nothing-here")
    v.close()


@pytest.mark.slow
@needs_s3
def test_cli_export_lake_to_s3_then_search_it_like_the_vault(tmp_path, s3_env):
    from tests.test_cli import digit_clips, run_cli

    env, bucket = s3_env
    v = tmp_path / "v.duckdb"
    clips = digit_clips()[:6]
    assert run_cli("init", v, "--kdf-log2n", "10", passphrase=PW).returncode == 0
    assert run_cli("ingest", v, *clips, passphrase=PW).returncode == 0
    r = run_cli("export-lake", v, f"s3://{bucket}/lake", passphrase=PW, env=env)
    assert r.returncode == 0, r.stderr
    assert "objects written 6" in r.stdout and f"s3://{bucket}/lake" in r.stdout
    a = run_cli("search", v, clips[4], "--json")
    b = run_cli("search", f"lake:s3://{bucket}/lake", clips[4], "--json", env=env)
    assert a.returncode == b.returncode == 0, b.stderr
    da, db = json.loads(a.stdout), json.loads(b.stdout)
    assert da["matched"] and _without_timings(da) == _without_timings(db)
