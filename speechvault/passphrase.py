"""Where a passphrase comes from: a key file, the environment, or a hidden prompt. Never argv.

Order (first that applies wins):

1. ``key_file``: the file's text; one trailing newline (``\\n`` or ``\\r\\n``) is stripped, nothing
   else, so a passphrase may contain inner or leading spaces.
2. the environment variable ``SPEECHVAULT_PASSPHRASE`` (``SPEECHVAULT_NEW_PASSPHRASE`` for the new
   passphrase of ``passwd``).
3. a hidden prompt through :func:`getpass.getpass`, only when stdin is a terminal; otherwise
   :class:`PassphraseRequiredError` with a message that says how to supply one. ``confirm=True``
   (``init``, the new passphrase of ``passwd``) asks twice and refuses a mismatch.

An empty passphrase is refused everywhere. No message below ever contains the passphrase.
"""

from __future__ import annotations

import getpass
import os
import secrets
import sys
from pathlib import Path
from typing import Callable, Mapping, TextIO

from speechvault.errors import InvalidInputError, NotFoundError, PassphraseRequiredError

ENV_VAR = "SPEECHVAULT_PASSPHRASE"
NEW_ENV_VAR = "SPEECHVAULT_NEW_PASSPHRASE"

MAX_KEY_FILE_BYTES = 64 * 1024


def read_key_file(path: str | os.PathLike[str]) -> str:
    """The passphrase stored in ``path`` (UTF-8; one trailing newline removed)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InvalidInputError(f"key file {p}: is a directory")
        size = p.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"key file {p}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"key file {p}: cannot read ({exc.strerror or exc})") from None
    if size > MAX_KEY_FILE_BYTES:
        raise InvalidInputError(f"key file {p}: too large ({size} bytes; a passphrase is expected)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"key file {p}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInputError(f"key file {p}: cannot read ({exc.strerror or exc})") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise InvalidInputError(f"key file {p}: is empty")
    return text


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed or detached stream
        return False


def get_passphrase(
    *,
    key_file: str | os.PathLike[str] | None = None,
    confirm: bool = False,
    prompt: str = "Passphrase: ",
    env_var: str = ENV_VAR,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] | None = None,
    key_file_option: str = "--key-file",
) -> str:
    """Return the passphrase from ``key_file``, ``$env_var`` or a hidden prompt (in that order).
    ``key_file_option`` is the option the error names (``passwd``'s new one: --new-key-file).

    ``environ``, ``stdin`` and ``ask`` exist for tests (defaults: ``os.environ``, ``sys.stdin``,
    ``getpass.getpass``).
    """
    if key_file is not None:
        return read_key_file(key_file)
    env = os.environ if environ is None else environ
    value = env.get(env_var)
    if value is not None:
        if value == "":
            raise InvalidInputError(f"${env_var} is set but empty")
        return value
    if not _is_tty(sys.stdin if stdin is None else stdin):
        raise PassphraseRequiredError(
            f"a passphrase is needed and stdin is not a terminal: set ${env_var} or use "
            f"{key_file_option}"
        )
    ask = getpass.getpass if ask is None else ask
    try:
        first = ask(prompt)
        if not first:
            raise InvalidInputError("empty passphrase refused")
        if confirm:
            second = ask("Repeat " + prompt[:1].lower() + prompt[1:])
            if first != second:
                raise InvalidInputError("the two passphrases do not match")
    except EOFError:
        raise PassphraseRequiredError("no passphrase entered (end of input)") from None
    return first


def generate_passphrase(n_bytes: int = 24) -> str:
    """A random passphrase (URL-safe base64 of ``n_bytes`` random bytes), e.g. for the demo."""
    return secrets.token_urlsafe(n_bytes)


#: a new passphrase shorter than this (after stripping surrounding white space) is refused unless
#: the user insists (``--weak-passphrase``); a vault is only as strong as its passphrase
MIN_PASSPHRASE_CHARS = 8
#: scrypt costs below 2^this make a guess cheap (2^14: 16 MiB); allowed for tests, with a warning
WARN_BELOW_LOG2_N = 14


def new_passphrase_warnings(passphrase: str, *, allow_weak: bool = False) -> list[str]:
    """Check a NEW passphrase (``init``, ``passwd``): ``InvalidInputError`` if it is shorter than
    ``MIN_PASSPHRASE_CHARS`` once stripped (" ", "a", a lone newline) unless ``allow_weak``; then
    a warning to print instead. Existing vaults are opened with whatever they were given."""
    n = len(passphrase.strip())
    if n >= MIN_PASSPHRASE_CHARS:
        return []
    what = "empty apart from white space" if n == 0 else f"only {n} character{'s' if n != 1 else ''}"
    if not allow_weak:
        raise InvalidInputError(
            f"the passphrase is {what}; use at least {MIN_PASSPHRASE_CHARS} characters "
            "(or --weak-passphrase to accept it anyway)")
    return [f"weak passphrase ({what}): anyone with the vault file can guess it quickly"]


def kdf_cost_warnings(log2_n: int) -> list[str]:
    """A warning for a scrypt cost below ``WARN_BELOW_LOG2_N`` (fine for tests, not for secrets)."""
    if int(log2_n) >= WARN_BELOW_LOG2_N:
        return []
    mib = (128 * 8 << int(log2_n)) >> 20
    return [f"--kdf-log2n {log2_n} makes each passphrase guess cheap (scrypt N = 2^{log2_n}, "
            f"{mib or '<1'} MiB); use {WARN_BELOW_LOG2_N} or more (default 17) outside tests"]
