"""The one errors module: every failure a user can cause is a ``SpeechVaultError``.

Each subclass is one kind of failure. ``str(err)`` is a single line meant for a terminal: the
CLI prints it and exits non-zero, the TUI shows it in a modal. Nothing below carries secrets
(passphrases, keys) in its message.
"""

from __future__ import annotations


class SpeechVaultError(Exception):
    """Base class: a one-line, user-facing message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class InvalidInputError(SpeechVaultError):
    """A user-supplied value (option, name, path) is not acceptable."""


class AudioDecodeError(SpeechVaultError):
    """A file is empty, not audio, corrupt, or holds unusable samples (NaN/inf)."""


class WrongPassphraseError(SpeechVaultError):
    """The passphrase does not unlock the vault's master key (checked before any decryption)."""


class IntegrityError(SpeechVaultError):
    """An encrypted blob failed its authentication tag or its framing: tampered or truncated."""


class VaultFormatError(SpeechVaultError):
    """The file is not a speechvault vault, or is of an unknown/newer format version."""


class VaultBusyError(SpeechVaultError):
    """Another process holds the vault's write lock (or a reader blocks a writer)."""


class ModelMismatchError(SpeechVaultError):
    """The vault was coded by another model than the one supplied (fingerprints differ)."""


class ModelError(SpeechVaultError):
    """A model file or its metadata is missing, malformed, or unusable."""


class RuntimeMissingError(SpeechVaultError):
    """A package the operation needs is not installed: the TFLite runtime, or an optional
    extra (TensorFlow and matplotlib for ``train``/``eval``, the ``encrypt-index`` modules)."""


class NotFoundError(SpeechVaultError):
    """A recording id, file or directory does not exist."""


class StorageError(SpeechVaultError):
    """The vault file could not be written (disk full, file size limit, I/O error); what was
    committed before is intact."""


class MemoryLimitError(StorageError):
    """A write needed more memory than the vault's DuckDB may use (``store.connection``'s
    ingest memory limit); what was committed before is intact."""


class PassphraseRequiredError(SpeechVaultError):
    """An operation needs the passphrase (ingest, export, decrypt) and none was given."""


class NotATerminalError(SpeechVaultError):
    """An interactive program (the TUI) was started without a terminal on stdin or stdout."""


class TooManyAttemptsError(SpeechVaultError):
    """Too many wrong passphrases in one session (each guess costs an scrypt on the server)."""


class LakeError(SpeechVaultError):
    """A Parquet lake (``export-lake``) is missing, malformed, or the engine reading it
    (DuckDB, ClickHouse, Spark) failed."""
