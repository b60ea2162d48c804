"""A lake in object storage (``s3://bucket/prefix``): where it is, how to reach it, how DuckDB reads it.

Why a module of its own: the lake is plain files so that any engine can read it from where an
organisation keeps its data, which is an S3-compatible object store (AWS S3, MinIO, Ceph, R2...).
Two clients reach it, each for what it does best:

* DuckDB's ``httpfs`` extension reads (``read_parquet('s3://...')`` with hive partitions, so a
  search fetches only the probed categories' files, by ranged GETs);
* ``boto3`` writes and deletes (DuckDB cannot delete an object, and an incremental export must
  propagate deletes).

Both take the endpoint and credentials from the standard AWS environment variables, never from
a command-line argument (which ``ps`` would show)::

    AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)   e.g. http://127.0.0.1:9000 for a local server;
                                                unset: AWS S3 itself
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY     the credentials
    AWS_SESSION_TOKEN                            optional
    AWS_REGION (or AWS_DEFAULT_REGION)           default us-east-1

With an endpoint set, objects are addressed path-style (``host/bucket/key``), which every
S3-compatible server accepts. Both clients come with the ``[lake]`` extra; without it, a
one-line error names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from speechvault.errors import LakeError, RuntimeMissingError
from speechvault.extras import install_hint

__all__ = ["S3Location", "is_s3", "parse_s3", "s3_env", "duckdb_s3_connection", "s3_client"]

SCHEME = "s3://"


def is_s3(text) -> bool:
    """Whether ``text`` names a lake in object storage."""
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``: the lake's files are the keys under ``prefix/``."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty (the whole bucket)

    def key(self, rel: str) -> str:
        """The object key of the lake file ``rel`` (a path relative to the lake)."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def url(self, rel: str = "") -> str:
        """``s3://bucket/prefix/rel``: how DuckDB names the file."""
        return f"{SCHEME}{self.bucket}/{self.key(rel)}".rstrip("/")

    def __str__(self) -> str:
        return self.url()


def parse_s3(text: str) -> S3Location:
    """``s3://bucket/prefix`` -> ``S3Location``; a one-line ``LakeError`` if malformed."""
    rest = str(text)[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or any(p in (".", "..") for p in prefix.split("/")) or "//" in prefix:
        raise LakeError(f"{text}: expected s3://BUCKET/PREFIX")
    return S3Location(bucket, prefix)


@dataclass(frozen=True)
class S3Env:
    """The endpoint and credentials of the standard AWS environment variables."""

    endpoint: str | None
    key_id: str | None
    secret: str | None
    token: str | None
    region: str


def s3_env() -> S3Env:
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    return S3Env(endpoint=endpoint, key_id=env.get("AWS_ACCESS_KEY_ID") or None,
                 secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
                 token=env.get("AWS_SESSION_TOKEN") or None,
                 region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1")


def _sql_str(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _secret_sql(e: S3Env) -> str:
    """``CREATE SECRET`` for DuckDB's S3 reader from the environment (values as literals:
    DDL takes no parameters; they stay in this in-memory connection)."""
    opts = ["TYPE s3", f"REGION {_sql_str(e.region)}"]
    if e.key_id:
        opts += [f"KEY_ID {_sql_str(e.key_id)}", f"SECRET {_sql_str(e.secret or '')}"]
    if e.token:
        opts.append(f"SESSION_TOKEN {_sql_str(e.token)}")
    if e.endpoint:
        url = urlsplit(e.endpoint if "://" in e.endpoint else "https://" + e.endpoint)
        if not url.netloc:
            raise LakeError(f"AWS_ENDPOINT_URL={e.endpoint!r}: expected http(s)://HOST[:PORT]")
        opts += [f"ENDPOINT {_sql_str(url.netloc)}", "URL_STYLE 'path'",
                 f"USE_SSL {'true' if url.scheme == 'https' else 'false'}"]
    return f"CREATE SECRET speechvault_lake ({', '.join(opts)})"


def duckdb_s3_connection():
    """An in-memory DuckDB connection that reads ``s3://`` (httpfs loaded, secret from the
    environment). The extension comes from the ``duckdb-extension-httpfs`` wheel of the
    installed DuckDB (no download at run time), else from DuckDB's own extension folder."""
    import duckdb

    from store.encrypted_index import httpfs_extension_path

    con = duckdb.connect(":memory:")
    ext = httpfs_extension_path()
    try:
        con.execute(f"LOAD {_sql_str(str(ext))}" if ext is not None else "LOAD httpfs")
    except duckdb.Error:
        con.close()
        raise RuntimeMissingError(
            f"reading a lake in object storage needs DuckDB's httpfs extension for DuckDB "
            f"{duckdb.__version__}: {install_hint('lake')}") from None
    try:
        con.execute(_secret_sql(s3_env()))
    except duckdb.Error as exc:
        con.close()
        raise LakeError(f"S3 settings: {str(exc).splitlines()[0]}") from None
    return con


def s3_client():
    """A boto3 S3 client from the environment (path-style when an endpoint is set)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RuntimeMissingError(
            f"`speechvault export-lake VAULT s3://...` needs boto3, not installed here: "
            f"{install_hint('lake')}") from None
    e = s3_env()
    return boto3.client(
        "s3", endpoint_url=e.endpoint, region_name=e.region, aws_access_key_id=e.key_id,
        aws_secret_access_key=e.secret, aws_session_token=e.token,
        config=Config(s3={"addressing_style": "path"} if e.endpoint else {},
                      retries={"max_attempts": 3}))
