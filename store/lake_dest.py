"""Where ``export-lake`` writes: a local folder or ``s3://bucket/prefix``, behind one small interface.

Why: the export decides *what* to write (which partitions changed, which objects are new or
gone, the manifest last); this module only knows *how* a file gets there. ``LocalDest`` renames
staged files into place (a reader sees a whole old or a whole new partition); ``S3Dest`` uploads
them with boto3 (each object PUT is atomic) and deletes the keys no longer wanted. Paths are
relative to the lake (``codes/model=<sha12>/category=3``), with ``/`` separators.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from speechvault.errors import InvalidInputError, LakeError, NotFoundError, VaultFormatError

__all__ = ["LocalDest", "S3Dest", "dest_for"]


class LocalDest:
    """A lake in a local folder."""

    def __init__(self, root) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def check_writable(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInputError(f"{self.root}: exists and is not a folder")
        if not self.root.parent.exists():
            raise NotFoundError(f"{self.root.parent}: no such directory")

    def manifest_text(self, name: str) -> str | None:
        path = self.root / name
        if not path.exists():
            return None
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            raise VaultFormatError(f"{self.root}: unreadable lake manifest") from None

    def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())

    def prepare(self) -> None:
        self.root.mkdir(exist_ok=True)

    @contextlib.contextmanager
    def staging(self):
        """A scratch folder on the same file system (so staged files rename into place)."""
        d = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def has(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def dirs(self, rel: str) -> list[str]:
        d = self.root / rel
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def files(self, rel: str) -> list[str]:
        d = self.root / rel
        return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []

    def put_dir(self, local: Path, rel: str) -> None:
        """Put the staged folder ``local`` at ``rel`` (the old one removed after the rename)."""
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if final.exists():
            trash = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, trash)
        os.replace(local, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def put_file(self, local: Path, rel: str) -> None:
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, final)

    def put_bytes(self, rel: str, data: bytes) -> None:
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, final)

    def remove_dir(self, rel: str) -> None:
        shutil.rmtree(self.root / rel)

    def remove_file(self, rel: str) -> None:
        (self.root / rel).unlink()


class S3Dest:
    """A lake under ``s3://bucket/prefix`` (boto3, credentials from the environment)."""

    def __init__(self, location, client=None) -> None:
        from store.lake_s3 import s3_client

        self.loc = location
        self.s3 = client if client is not None else s3_client()

    def __str__(self) -> str:
        return self.loc.url()

    def _call(self, what: str, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.loc.bucket, **kw)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404") and what == "bucket":
                raise NotFoundError(f"{self.loc}: no such bucket") from None
            raise LakeError(f"{self.loc}: {what}: {code or 'error'} "
                            f"({exc.response.get('Error', {}).get('Message', '')})") from None
        except BotoCoreError as exc:
            raise LakeError(f"{self.loc}: {what}: {str(exc).splitlines()[0]}") from None

    def check_writable(self) -> None:
        self._call("bucket", self.s3.head_bucket)

    def manifest_text(self, name: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.loc.bucket, Key=self.loc.key(name))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise LakeError(f"{self.loc}: reading {name}: "
                            f"{exc.response.get('Error', {}).get('Code', 'error')}") from None
        return body.read().decode("utf-8", errors="replace")

    def _keys(self, rel: str, delimiter: bool) -> tuple[list[str], list[str]]:
        """(sub-"folders", object names) directly under ``rel``."""
        prefix = self.loc.key(rel).rstrip("/") + "/" if rel else (
            self.loc.prefix + "/" if self.loc.prefix else "")
        kw = {"Prefix": prefix}
        if delimiter:
            kw["Delimiter"] = "/"
        dirs, names = [], []
        token = None
        while True:
            page = self._call("list", self.s3.list_objects_v2,
                              **kw, **({"ContinuationToken": token} if token else {}))
            dirs += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
            names += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return dirs, names
            token = page["NextContinuationToken"]

    def is_empty(self) -> bool:
        dirs, names = self._keys("", delimiter=True)
        return not dirs and not names

    def prepare(self) -> None:
        pass

    @contextlib.contextmanager
    def staging(self):
        d = Path(tempfile.mkdtemp(prefix="speechvault-lake-"))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def has(self, rel: str) -> bool:
        dirs, names = self._keys(rel.rsplit("/", 1)[0] if "/" in rel else "", delimiter=True)
        leaf = rel.rsplit("/", 1)[-1]
        return leaf in dirs or leaf in names

    def dirs(self, rel: str) -> list[str]:
        return sorted(self._keys(rel, delimiter=True)[0])

    def files(self, rel: str) -> list[str]:
        return sorted(self._keys(rel, delimiter=True)[1])

    def _upload(self, local: Path, rel: str) -> None:
        with open(local, "rb") as fh:
            self._call("upload", self.s3.put_object, Key=self.loc.key(rel), Body=fh)

    def put_dir(self, local: Path, rel: str) -> None:
        """Upload the staged folder's files under ``rel``; then delete the keys there that the
        new set does not have (a reader between the two sees the new files plus, at worst, a
        stale file of the same partition)."""
        new = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
        for name in sorted(new):
            self._upload(local / name, f"{rel}/{name}")
        old = set(self._keys(rel, delimiter=False)[1])
        self._delete([f"{rel}/{n}" for n in sorted(old - new)])

    def put_file(self, local: Path, rel: str) -> None:
        self._upload(local, rel)

    def put_bytes(self, rel: str, data: bytes) -> None:
        self._call("upload", self.s3.put_object, Key=self.loc.key(rel), Body=data)

    def _delete(self, rels: list[str]) -> None:
        for i in range(0, len(rels), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = rels[i:i + 1000]
            if chunk:
                self._call("delete", self.s3.delete_objects, Delete={
                    "Objects": [{"Key": self.loc.key(r)} for r in chunk], "Quiet": True})

    def remove_dir(self, rel: str) -> None:
        self._delete([f"{rel}/{n}" for n in self._keys(rel, delimiter=False)[1]])

    def remove_file(self, rel: str) -> None:
        self._delete([rel])


def dest_for(dest) -> LocalDest | S3Dest:
    """The destination ``dest`` names: ``s3://bucket/prefix`` or a local folder."""
    from store.lake_s3 import is_s3, parse_s3

    if isinstance(dest, (LocalDest, S3Dest)):
        return dest
    if is_s3(dest):
        return S3Dest(parse_s3(str(dest)))
    return LocalDest(dest)


def parse_manifest_text(text: str | None, where) -> dict | None:
    """The manifest dict from its text (None: no manifest); ``VaultFormatError`` if unreadable."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise VaultFormatError(f"{where}: unreadable lake manifest") from None
