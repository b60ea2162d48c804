"""A damaged vault file is a one-line error, never a traceback (issue 17, item 3).

Why a module of its own: DuckDB reports a flipped byte or a truncated file lazily, when a query
first touches the damaged block ("Corrupt database file: computed checksum ... does not match",
"Could not read enough bytes from file ..."), so any method of ``Vault`` can meet one. ``guarded``
wraps the public methods: a ``duckdb.Error`` that escapes becomes ``VaultFormatError`` naming
the file and DuckDB's first line (a lock conflict stays ``VaultBusyError``); a write the file
system refused is handled where it happens (``store.connection.storage_error``).

``check_meta`` validates the one ``vault_meta`` row before anything uses it: every value a
hostile or damaged row can hold (a NUL in a text, a non-hex model hash, ``k = 0``, class names that
do not match ``c``, a key wrap that is not a JSON object, a NaN tau) is refused with the field's name.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Callable

import duckdb

from speechvault.errors import VaultFormatError

__all__ = ["is_lock_error", "is_read_damage", "damaged", "guarded", "check_meta", "MAX_K",
           "MAX_C", "HEX64"]

#: bounds of the stored code length and category count (the DDL and the index use SMALLINT
#: categories; K > 4096 bits is far beyond any model of the project)
MAX_K = 4096
MAX_C = 32767
HEX64 = re.compile(r"[0-9a-f]{64}")

_READ_DAMAGE = ("corrupt", "checksum", "could not read", "not a valid duckdb", "serializ")


def is_lock_error(exc: BaseException) -> bool:
    low = str(exc).lower()
    return "lock" in low and ("conflicting" in low or "could not set lock" in low)


def is_read_damage(exc: BaseException) -> bool:
    """A DuckDB error from reading a damaged file (not a refused write: those are storage errors)."""
    low = str(exc).lower()
    return any(s in low for s in _READ_DAMAGE) and "no space" not in low \
        and "file too large" not in low and "could not write" not in low


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def damaged(path: object, exc: BaseException) -> VaultFormatError:
    return VaultFormatError(
        f"{path}: the vault file is damaged or truncated ({_first_line(exc)}); restore it from a "
        "backup (`speechvault verify` lists what can still be read)")


def guarded(method: Callable) -> Callable:
    """Turn a ``duckdb.Error`` escaping ``method`` (of an object with ``.path``) into one line."""
    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except duckdb.Error as exc:
            if is_lock_error(exc):
                from store.access import busy_error  # names who holds the vault

                raise busy_error(getattr(self, "path", "vault")) from None
            raise damaged(getattr(self, "path", "vault"), exc) from None

    return wrapper


def _text(value: Any, field: str, where: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise VaultFormatError(f"{where}: damaged vault metadata ({field})")
    return value


def check_meta(where: str, row: tuple) -> dict[str, Any]:
    """The ``vault_meta`` row (format_version, created, app_version, cipher, key_wrap,
    model_sha256, k, c, class_names, tau) checked and converted; ``VaultFormatError`` naming the
    first bad field. The key wrap must be a JSON object here; its fields are checked when it is
    used (``store.keys.KeyWrap.from_dict``)."""
    if row is None or len(row) != 10:
        raise VaultFormatError(f"{where}: damaged vault metadata (no row)")
    version, created, app_version, cipher, key_wrap, sha, k, c, class_names, tau = row
    _text(cipher, "cipher", where)
    if not isinstance(sha, str) or not HEX64.fullmatch(sha):
        raise VaultFormatError(f"{where}: damaged vault metadata (model_sha256 is not 64 hex digits)")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise VaultFormatError(f"{where}: damaged vault metadata (k = {k!r}, expected 1..{MAX_K})")
    if not isinstance(c, int) or not 1 <= c <= MAX_C:
        raise VaultFormatError(f"{where}: damaged vault metadata (c = {c!r}, expected 1..{MAX_C})")
    if not isinstance(class_names, list) or len(class_names) != c:
        raise VaultFormatError(f"{where}: damaged vault metadata (class_names do not list c = {c} "
                               "names)")
    for name in class_names:
        _text(name, "class_names", where)
    if not isinstance(tau, (int, float)) or not math.isfinite(tau) or not 0.0 < tau < 1.0:
        raise VaultFormatError(f"{where}: damaged vault metadata (tau = {tau!r})")
    try:
        wrap = json.loads(_text(key_wrap, "key wrap", where))
    except ValueError:
        wrap = None
    if not isinstance(wrap, dict):
        raise VaultFormatError(f"{where}: damaged vault metadata (key wrap is not a JSON object)")
    return {"format_version": version, "created": created, "app_version": app_version,
            "cipher": cipher, "key_wrap": wrap, "model_sha256": sha, "K": int(k), "C": int(c),
            "class_names": [str(n) for n in class_names], "tau": float(tau)}
