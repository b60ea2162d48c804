"""speechvault command line: a thin typer layer over ``store.vault.Vault`` (one library call per
command).

Conventions (see README.md, "Command line"):

* Library errors (``SpeechVaultError``) and OS errors on user paths print ONE line
  ``error: <message>`` on stderr and exit 1; never a traceback. Ctrl-C exits 130.
* ``search`` exits 0 whether or not something matched (``"matched"`` is in ``--json``); it exits 1
  only on errors. ``ingest`` and ``verify`` exit 1 when any file failed (the summary is printed
  first).
* Tables and JSON go to stdout; progress bars, step messages and errors go to stderr.
* Passphrases come from ``--key-file``, ``$SPEECHVAULT_PASSPHRASE`` or a hidden prompt, never argv.
  ``search`` and ``list``/``info`` need none, unless the vault was created with
  ``init --encrypt-index``: then every command asks for it (the whole file is encrypted).
* Heavy modules (TensorFlow, Textual, the TFLite runtime, DuckDB) are imported inside commands,
  so ``speechvault --help`` stays fast; a test checks it.
"""

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands import kit, tables
from commands.kit import JsonOpt
from speechvault.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PassphraseRequiredError,
    RuntimeMissingError,
)
from speechvault.passphrase import (
    ENV_VAR,
    NEW_ENV_VAR,
    get_passphrase,
    kdf_cost_warnings,
    new_passphrase_warnings,
)
from store.access import DEFAULT_READ_WAIT, DEFAULT_WRITE_WAIT  # no DuckDB

__all__ = ["app", "main"]

app = typer.Typer(
    name="speechvault",
    help=(
        "A private, searchable vault of speech recordings in one DuckDB file: encrypted audio, "
        "a deep-hash index, two-stage retrieval (Zhang, Zhao & Hu, IEEE Access 2020)."
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    # rich help on a terminal; plain text to a pipe or file (and no rich import: start-up)
    rich_markup_mode="rich" if sys.stdout.isatty() else None,
    pretty_exceptions_show_locals=False,  # locals may hold a passphrase
    # plain help (to a pipe) wraps at the terminal's width, not click's default 80 columns
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 200},
)
_command = kit.command_decorator(app)


# --------------------------------------------------------------------------- shared options
class Cipher(str, Enum):
    rossler = "rossler"
    chacha20poly1305 = "chacha20poly1305"


class Mode(str, Enum):
    auto = "auto"
    two_stage = "two-stage"
    traversal = "traversal"
    multi_probe = "multi-probe"


VaultArg = Annotated[
    Path, typer.Argument(metavar="VAULT", help="The vault file (one DuckDB file).", show_default=False)
]
KeyFileOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--key-file",
        help=f"Read the passphrase from this file (else ${ENV_VAR}, else a hidden prompt).",
        show_default=False,
    ),
]
_WAIT_HELP = ("Wait up to this many seconds for another process that holds the vault (an "
              "ingest's commit, another writer, a long read), then fail naming it.")
ReadWaitOpt = Annotated[float, typer.Option("--wait", min=0.0, metavar="SECONDS", help=_WAIT_HELP)]
WriteWaitOpt = Annotated[float, typer.Option("--wait", min=0.0, metavar="SECONDS", help=_WAIT_HELP)]


def _existing_vault(path: Path | str) -> Path | str:
    from store.lake_uri import is_lake_uri

    if isinstance(path, str) and is_lake_uri(path):  # a lake: opened (and checked) by URI
        return path
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such vault")
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a directory, not a vault file")
    return path


def _passphrase(key_file: Optional[Path], *, confirm: bool = False) -> str:
    return get_passphrase(key_file=key_file, confirm=confirm)


def _open(path: Path, *, write: bool = False, passphrase: Optional[str] = None,
          have: Optional[str] = None, key_file: Optional[Path] = None,
          wait: Optional[float] = None):
    """Open the vault; ``passphrase`` also unlocks it. A vault whose index is encrypted needs a
    passphrase just to be read: ``passphrase``, else ``have`` (already read, not for unlocking),
    else one read now from ``key_file`` / the environment / the prompt. A lake URI
    (``store.lake_uri``) opens the lake read-only. A vault file's handle is shared
    (``store.access``): it holds the file only while an operation runs, waiting ``wait`` s."""
    if not isinstance(_existing_vault(path), Path):
        from store.lake import open_uri

        return open_uri(path, passphrase=passphrase)
    from store.vault import Vault

    index_passphrase = None
    if Vault.index_is_encrypted(path):
        index_passphrase = passphrase or have or _index_passphrase(key_file)
    if wait is None:
        wait = DEFAULT_WRITE_WAIT if write else DEFAULT_READ_WAIT
    return Vault.open(path, read_only=not write, passphrase=passphrase,
                      index_passphrase=index_passphrase, shared=True, wait=wait)


def _index_passphrase(key_file: Optional[Path]) -> str:
    """The passphrase of a vault whose index is encrypted, with the one-line hint when none can
    be had (no key file, no environment variable, no terminal)."""
    from store.encrypted_index import NEEDS_PASSPHRASE

    try:
        return _passphrase(key_file)
    except PassphraseRequiredError:
        raise PassphraseRequiredError(NEEDS_PASSPHRASE) from None


# --------------------------------------------------------------------------- version
def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("speechvault")
        except PackageNotFoundError:
            v = "0+unknown (not installed)"
        typer.echo(f"speechvault {v}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", help="Show the version and exit.", callback=_version_callback,
                     is_eager=True),
    ] = None,
) -> None:
    """A private, searchable vault of speech recordings in one DuckDB file.

    Audio is encrypted (Rossler stream cipher + HMAC, or ChaCha20-Poly1305) with a key only the
    passphrase unlocks; deep-hash codes stay searchable without it. Method: Zhang, Zhao & Hu,
    IEEE Access 8 (2020), doi:10.1109/ACCESS.2020.3036048.
    """


# --------------------------------------------------------------------------- init
@_command()
def init(
    vault: VaultArg,
    cipher: Annotated[Cipher, typer.Option(help="Cipher for the audio blobs.")] = Cipher.rossler,
    model: Annotated[
        Optional[str],
        typer.Option(help="A shipped model's name (see `speechvault models`) or a .tflite file "
                          "(its .json sidecar next to it); default: the shipped default.",
                     show_default=False),
    ] = None,
    kdf_log2n: Annotated[
        int,
        typer.Option("--kdf-log2n",
                     help="scrypt cost N = 2^this, 10..22 (17: 128 MiB, under a second per try). "
                          "Lower only for tests."),
    ] = 17,
    tau: Annotated[
        Optional[float],
        typer.Option(help="Default match threshold (normalized Hamming distance); default: the model's.",
                     show_default=False),
    ] = None,
    encrypt_index: Annotated[
        bool,
        typer.Option("--encrypt-index",
                     help="Encrypt the whole file with DuckDB's AES-256-GCM database encryption: "
                          "codes and names unreadable too, so search and list need the "
                          "passphrase. Needs: pip install 'speechvault\\[encrypt-index]'."),
    ] = False,
    weak_passphrase: Annotated[bool, typer.Option(
        "--weak-passphrase", help="Accept a passphrase shorter than 8 characters (warns).")] = False,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new, empty vault (asks for the passphrase twice)."""
    if os.path.lexists(vault):  # a dangling symbolic link too: never create through one
        raise InvalidInputError(f"{vault}: already exists (refusing to overwrite)")
    encoder = kit.model_encoder(model) if model is not None else None
    passphrase = _passphrase(key_file, confirm=True)
    # a passphrase below the floor is refused here; the warnings follow a successful init only
    warnings = new_passphrase_warnings(passphrase, allow_weak=weak_passphrase) + \
        kdf_cost_warnings(kdf_log2n)

    from store.vault import Vault

    with Vault.create(vault, passphrase, encoder=encoder, cipher=cipher.value,
                      kdf_log2_n=kdf_log2n, tau=tau, encrypt_index=encrypt_index) as v:
        info = v.info()
    kit.warn(warnings)
    if as_json:
        kit.print_json(info)
    else:
        kit.stdout().print(f"created [bold]{vault}[/bold]")
        tables.print_info(info, {})


# --------------------------------------------------------------------------- models
@_command()
def models(as_json: JsonOpt = False) -> None:
    """The shipped coding models: architecture, K, held-out figures, size (no vault needed)."""
    from hashing.encoder import model_summaries

    rows = model_summaries()
    if as_json:
        kit.print_json(rows)
        return
    from rich import box
    from rich.table import Table

    t = Table(title="shipped models (init VAULT --model NAME)", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True, padding=(0, 1))
    t.add_column("name", no_wrap=True)
    for col in ("arch", "K", "code", "recipe", "acc", "mAP", "tau", "size"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        code = "h2" if r["code"] == "h2" else "fp"
        t.add_row(r["name"], r["arch"], str(r["K"]), code, r["recipe"], tables.fmt_num(r["accuracy"]),
                  tables.fmt_num(r["mAP"]), f"{r['tau']:.3g}",
                  kit.fmt_size(r["tflite_bytes"] + r["fingerprint_bytes"]))
    t.caption = ("code: what a vault searches (h2: the paper's hash; fp: the identification "
                 "fingerprint). acc, mAP (of h2): FSDD speaker never seen in training (docs/models.md)")
    kit.stdout().print(t)


# --------------------------------------------------------------------------- ingest
@_command()
def ingest(
    vault: VaultArg,
    paths: Annotated[list[str], typer.Argument(metavar="PATHS", help="Audio files, folders or glob patterns.",
                                               show_default=False)],
    category: Annotated[
        Optional[str],
        typer.Option(help="Category label for all files (default: the model's predicted class).",
                     show_default=False),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Descend into sub-folders (and ** in globs).")] = False,
    max_duration: Annotated[float, typer.Option(
        "--max-duration", help="Refuse recordings longer than this many seconds (checked from "
                               "the header, before reading the file).")] = 3600.0,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
    wait: WriteWaitOpt = DEFAULT_WRITE_WAIT,
) -> None:
    """Encrypt and index audio files. Exit 1 if any file failed (after the summary)."""
    from speechvault.sources import expand_sources
    from store.sources import check_limit

    max_duration = check_limit(max_duration)
    sources = expand_sources(paths, recursive)
    files, problems = sources.files, sources.problems
    _existing_vault(vault)
    if not files:
        for raw, msg in problems:
            kit.err_line(f"{raw}: {msg}")
        raise InvalidInputError("nothing to ingest")
    passphrase = _passphrase(key_file)
    with _open(vault, write=True, have=passphrase, wait=wait) as v:
        v.unlock(passphrase)
        v.max_ingest_seconds = max_duration
        progress = kit.progress("ingest", enabled=not as_json)
        if progress is None:
            report = v.ingest(files, category=category)
        else:
            with progress:
                task = progress.add_task("", total=len(files))
                report = v.ingest(files, category=category,
                                  progress=kit.progress_callback(progress, task))
                progress.update(task, completed=len(files), description="done")
    errors = [(str(p), str(m)) for p, m in problems] + [(str(p), str(m)) for p, m in report.errors]
    from speechvault.silence import added_paths, silent_files

    silent = silent_files(added_paths(files, report), max_duration)
    if as_json:
        d = kit.jsonable(report)
        if isinstance(d, dict):
            d["errors"] = [{"path": p, "message": m} for p, m in errors]
            d["skipped_unsupported"] = tables.skipped_rows(sources.skipped)
            d["warnings"] = [{"path": p, "message": m} for p, m in silent]
        kit.print_json(d)
    else:
        tables.print_ingest(report, len(errors), sources.skipped)
    kit.warn([m for _, m in silent])
    for p, m in errors:
        kit.err_line(f"{p}: {m}" if not m.startswith(p) else m)
    if getattr(report, "cancelled", False):
        sys.stderr.write("interrupted\n")
        raise typer.Exit(130)
    if errors:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- search
VaultOrLakeArg = Annotated[
    str, typer.Argument(metavar="VAULT", show_default=False,
                        help="The vault file, or a lake made by export-lake: lake:DEST (DuckDB), "
                             "clickhouse:DEST (chDB), spark:DEST or spark://HOST:PORT/DEST.")]


@_command()
def search(
    vault: VaultOrLakeArg,
    queries: Annotated[list[str], typer.Argument(
        metavar="QUERY...", show_default=False,
        help="Audio files to look for, folders of them, glob patterns, or - for audio on stdin. "
             "Several: one model load, JSON Lines with --json.")],
    threshold: Annotated[
        Optional[float],
        typer.Option("--threshold", "--tau", min=0.0, max=1.0,
                     help="Match if BER < this (default: the vault's tau, 0.26 in the paper).",
                     show_default=False),
    ] = None,
    mode: Annotated[Mode, typer.Option(help="auto (two-stage, then every row if nothing in the "
                                            "category matched), two-stage (paper), traversal (every "
                                            "row) or multi-probe (the top --probe categories).")] = Mode.auto,
    probe: Annotated[int, typer.Option(min=1, help="Categories probed in multi-probe mode.")] = 2,
    top: Annotated[int, typer.Option(min=1, help="Hits shown.")] = 10,
    decrypt_to: Annotated[
        Optional[Path],
        typer.Option("--decrypt-to", help="Decrypt the matches into this folder (needs the passphrase).",
                     show_default=False),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Descend into sub-folders (and ** in globs).")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="With --decrypt-to: overwrite files "
                                        "that differ (an identical file is kept as is).")] = False,
    max_duration: Annotated[float, typer.Option(
        "--max-duration", help="Refuse a query longer than this many seconds.")] = 600.0,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
    wait: ReadWaitOpt = DEFAULT_READ_WAIT,
) -> None:
    """Find recordings by their sound. No passphrase needed unless --decrypt-to (or the vault's
    index is encrypted).

    Exit status 0 whether or not something matched (see "matched" in --json); 1 on errors (with
    several queries: after answering all the others).
    """
    from speechvault import batch
    from store.sources import check_limit

    max_duration = check_limit(max_duration)

    def opened():
        v = _open(vault, have=passphrase, key_file=key_file, wait=wait)
        v.max_query_seconds = max_duration
        return v

    if batch.is_batch(queries):
        _existing_vault(vault)
        passphrase = _passphrase(key_file) if decrypt_to is not None else None
        raise typer.Exit(batch.run_batch_search(
            queries, opened, tau=threshold,
            mode=mode.value, probe=probe, top=top, recursive=recursive, decrypt_to=decrypt_to,
            passphrase=passphrase, as_json=as_json))
    query = queries[0]
    if query != batch.STDIN and not Path(query).exists():
        raise NotFoundError(f"{query}: no such file")
    _existing_vault(vault)
    passphrase = _passphrase(key_file) if decrypt_to is not None else None
    saved, failed = [], []
    source = batch.read_stdin_audio() if query == batch.STDIN else Path(query)
    with _open(vault, have=passphrase, key_file=key_file, wait=wait) as v:
        v.max_query_seconds = max_duration
        result = v.search(source, tau=threshold, mode=mode.value, probe=probe, top=top)
        if decrypt_to is not None and result.matched:
            from store.exports import save_matches

            v.unlock(passphrase)
            saved, failed = save_matches(v, result.hits, decrypt_to, force=force)
    if as_json:
        d = kit.jsonable(result)
        if decrypt_to is not None and isinstance(d, dict):
            d["decrypted"] = [str(s.path) for s in saved]
        kit.print_json(d)
    else:
        tables.print_search(result, [s.describe() for s in saved])
    from speechvault.silence import silence_warning

    kit.warn([w for w in [silence_warning(source, max_duration, query=True)] if w])
    for path, message in failed:  # after the results: a file in the way does not hide them
        kit.err_line(message if message.startswith(path) else f"{path}: {message}")
    if failed:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- export
@_command()
def export(
    vault: VaultArg,
    recording_id: Annotated[int, typer.Argument(metavar="ID", help="Recording id (see list).",
                                                show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", metavar="PATH", show_default=False,
                                        help="Where to write the decrypted original: a file, a "
                                        "folder (an existing one, or a path ending in /: the "
                                        "recording's own name inside it), or '-' for stdout.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file; "
                                        "with -o -, write to a terminal.")] = False,
    key_file: KeyFileOpt = None,
    wait: ReadWaitOpt = DEFAULT_READ_WAIT,
) -> None:
    """Decrypt one recording, byte-identical to the file that was ingested."""
    from store.exports import is_folder_target, save_recording

    to_stdout = output == "-"
    if to_stdout and sys.stdout.isatty() and not force:
        raise InvalidInputError("refusing to write audio to the terminal: redirect stdout "
                                "(> memo.wav) or give --force")
    if not to_stdout and not force and not is_folder_target(output) and Path(output).exists():
        raise InvalidInputError(f"{output}: already exists (use --force to overwrite)")
    _existing_vault(vault)
    passphrase = _passphrase(key_file)
    with _open(vault, passphrase=passphrase, wait=wait) as v:
        if to_stdout:
            for piece in v.export_chunks(recording_id):  # a long recording, piece by piece
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return
        saved = save_recording(v, recording_id, output, force=force)
    kit.stderr().print(f"wrote {saved.describe()}", markup=False, highlight=False)


@_command("export-lake")
def export_lake(
    vault: VaultArg,
    dest: Annotated[str, typer.Argument(metavar="DEST", show_default=False,
                                        help="The lake folder or s3://BUCKET/PREFIX (new, empty, "
                                             "or this vault's lake to bring up to date).")],
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the index as a Parquet lake that DuckDB, ClickHouse and Spark search (docs/scale.md):
    codes partitioned by model and category, recordings without blobs, each sealed blob as an
    object named by a keyed hash. A re-export writes only what changed. Needs the passphrase."""
    from store.lake_export import export_lake_file

    report = export_lake_file(_existing_vault(vault), dest, lambda: _passphrase(key_file))
    if as_json:
        kit.print_json(kit.jsonable(report))
        return
    kit.stdout().print(
        f"exported to {report.dest}: {report.recordings} recordings, {report.windows} windows; "
        f"partitions written {len(report.partitions_written)}, kept {report.partitions_kept}, "
        f"removed {len(report.partitions_removed)}; objects written {report.objects_written}, "
        f"removed {report.objects_removed}; {kit.fmt_size(report.bytes_written)} in "
        f"{report.seconds:.2f} s", markup=False, highlight=False)


# --------------------------------------------------------------------------- list / info
@_command("list")
def list_(
    vault: VaultArg,
    category: Annotated[Optional[str], typer.Option(help="Only this category.", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option(help="Only names containing this text "
                                                     "(case-insensitive).", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most this many rows.",
                                                 show_default=False)] = None,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
    tsv: Annotated[bool, typer.Option("--tsv", help="Tab-separated lines for scripts: a header, "
                                      "then one recording a line (seconds, bytes, ISO time).")]
    = False,
    wait: ReadWaitOpt = DEFAULT_READ_WAIT,
) -> None:
    """List the recordings (no passphrase needed unless the index is encrypted)."""
    with _open(vault, key_file=key_file, wait=wait) as v:
        rows = v.list(category=category, name_like=name, limit=limit)
    if as_json:
        kit.print_json(rows)
        return
    if tsv:
        from speechvault.tsv import list_lines

        sys.stdout.write("".join(line + "\n" for line in list_lines(rows)))
        return
    from rich.table import Table

    t = Table()
    for col in ("id", "name", "category", "duration", "size", "windows", "added"):
        t.add_column(col, justify="right" if col in ("id", "duration", "size", "windows") else "left")
    for r in rows:
        added = r.added.strftime("%Y-%m-%d %H:%M") if hasattr(r.added, "strftime") else str(r.added)
        t.add_row(str(r.id), str(r.name), str(r.category), kit.fmt_secs(r.duration), kit.fmt_size(r.size),
                  str(r.n_windows), added)
    con = kit.stdout()
    con.print(t)
    con.print(f"{len(rows)} recording{'s' if len(rows) != 1 else ''}")


@_command()
def info(vault: VaultArg, key_file: KeyFileOpt = None, as_json: JsonOpt = False,
         wait: ReadWaitOpt = DEFAULT_READ_WAIT) -> None:
    """Vault summary: format, model, cipher, KDF cost, counts (no passphrase needed unless the
    index is encrypted)."""
    with _open(vault, key_file=key_file, wait=wait) as v:
        inf = v.info()
        counts = v.category_counts()
    if as_json:
        d = kit.jsonable(inf)
        if isinstance(d, dict):
            d.setdefault("category_counts", kit.jsonable(counts))
        kit.print_json(d)
    else:
        tables.print_info(inf, counts)


# --------------------------------------------------------------------------- delete
@_command()
def delete(
    vault: VaultArg,
    recording_id: Annotated[int, typer.Argument(metavar="ID", help="Recording id (see list).",
                                                show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    key_file: KeyFileOpt = None,
    wait: WriteWaitOpt = DEFAULT_WRITE_WAIT,
) -> None:
    """Delete one recording (its code and its encrypted audio)."""
    _existing_vault(vault)
    with _open(vault, write=True, key_file=key_file, wait=wait) as v:
        row = v.get(recording_id)
        if not yes:
            if not sys.stdin.isatty():
                raise InvalidInputError("refusing to delete without --yes when stdin is not a terminal")
            if not typer.confirm(f"delete {row.id} ({row.name})?", default=False, err=True):
                raise typer.Exit(1)
        try:
            v.delete(recording_id)
        except PassphraseRequiredError:
            v.unlock(_passphrase(key_file))
            v.delete(recording_id)
    kit.stderr().print(f"deleted {row.id} ({row.name})")


# --------------------------------------------------------------------------- verify
@_command()
def verify(vault: VaultArg, key_file: KeyFileOpt = None, as_json: JsonOpt = False,
           wait: ReadWaitOpt = DEFAULT_READ_WAIT) -> None:
    """Decrypt and authenticate every blob; exit 1 if any fails."""
    _existing_vault(vault)
    passphrase = _passphrase(key_file)
    with _open(vault, passphrase=passphrase, wait=wait) as v:
        progress = kit.progress("verify", enabled=not as_json)
        if progress is None:
            report = v.verify()
        else:
            with progress:
                task = progress.add_task("", total=None)
                report = v.verify(
                    progress=lambda done, total: progress.update(task, completed=done, total=total))
    if as_json:
        kit.print_json(report)
    else:
        con = kit.stdout()
        for note in report.notes:  # stdout, with the report: stderr keeps its one error line
            con.print(f"note: {note}", markup=False, highlight=False)
        if report.ok:
            con.print(f"[green]ok[/green]: {report.checked} recordings verified")
        else:
            from rich.table import Table

            t = Table(title="failures", title_justify="left")
            t.add_column("id", justify="right")
            t.add_column("name")
            t.add_column("problem")
            for rid, nm, msg in report.failures:
                t.add_row(str(rid), str(nm), str(msg))
            con.print(t)
    if not report.ok:
        raise IntegrityError(f"verification failed: {len(report.failures)} problem(s) "
                             f"({report.checked} recordings checked)")


@_command()
def upgrade(vault: VaultArg, key_file: KeyFileOpt = None) -> None:
    """Bind a vault made before format 4: re-seal every recording bound to this vault and its
    record id and authenticate the settings, model and index (one transaction). Ingest,
    passwd and reindex do it too; a bound vault is left as it is."""
    passphrase = _passphrase(key_file)
    with _open(vault, write=True, passphrase=passphrase) as v:
        was_bound = v.bound
        n = v.bind()
    kit.stderr().print("already bound: nothing to do" if was_bound else f"bound: {n} recording(s) re-sealed")


# --------------------------------------------------------------------------- reindex
@_command()
def reindex(
    vault: VaultArg,
    model: Annotated[str, typer.Option(help="Model to re-code with: a shipped model's name or a "
                                            ".tflite path (default: the shipped default).")]
    = "default",
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
    wait: WriteWaitOpt = DEFAULT_WRITE_WAIT,
) -> None:
    """Re-code every recording with a model (e.g. a format-2 vault with the excerpt-searchable
    default). Decrypts each blob, so it asks for the passphrase; crash-safe."""
    _existing_vault(vault)
    passphrase = _passphrase(key_file)
    enc = kit.model_encoder(model)
    with _open(vault, write=True, passphrase=passphrase, wait=wait) as v:
        progress = kit.progress("reindex", enabled=not as_json)
        if progress is None:
            report = v.reindex(enc)
        else:
            with progress:
                task = progress.add_task("", total=None)
                report = v.reindex(
                    enc, progress=lambda done, total: progress.update(task, completed=done, total=total))
    if as_json:
        kit.print_json(report)
    else:
        kit.stdout().print(f"reindexed {report.recordings} recordings ({report.windows} windows): "
                        f"{report.old_model} (K={report.old_k}) -> {report.new_model} (K={report.new_k})")


# --------------------------------------------------------------------------- passwd
@_command()
def passwd(
    vault: VaultArg,
    key_file: KeyFileOpt = None,
    new_key_file: Annotated[
        Optional[Path],
        typer.Option("--new-key-file", help=f"Read the new passphrase from this file (else "
                                            f"${NEW_ENV_VAR}, else a hidden prompt, asked twice).",
                     show_default=False),
    ] = None,
    weak_passphrase: Annotated[bool, typer.Option(
        "--weak-passphrase", help="Accept a new passphrase shorter than 8 characters (warns).")] = False,
    rekey: Annotated[bool, typer.Option(
        "--rekey", help="Also draw a new master key and re-seal every recording (one "
                        "transaction): an old copy of the vault plus the old passphrase then "
                        "opens nothing added afterwards. The new passphrase may equal the old.")] = False,
    wait: WriteWaitOpt = DEFAULT_WRITE_WAIT,
) -> None:
    """Change the passphrase (re-wraps the master key; audio is not re-encrypted unless --rekey).
    A vault whose index is encrypted is rewritten under the new passphrase's database key."""
    _existing_vault(vault)
    old = _passphrase(key_file)
    with _open(vault, write=True, have=old, wait=wait) as v:
        v.unlock(old)
        new = get_passphrase(key_file=new_key_file, confirm=True, prompt="New passphrase: ",
                             env_var=NEW_ENV_VAR, key_file_option="--new-key-file")
        if new == old and not rekey:
            raise InvalidInputError("the new passphrase is the same as the old one")
        warnings = new_passphrase_warnings(new, allow_weak=weak_passphrase)
        if rekey:
            n = v.rekey(old, None if new == old else new)
        else:
            v.change_passphrase(old, new)
    kit.warn(warnings)
    if rekey:
        kit.stderr().print(f"new master key: {n} recording(s) re-sealed"
                        + ("" if new == old else "; passphrase changed"))
    else:
        kit.stderr().print("passphrase changed")


# --------------------------------------------------------------------------- demo
@_command()
def demo(
    workdir: Annotated[
        Optional[Path],
        typer.Option(help="Build the demo vault here and keep it (default: a temporary folder, "
                          "removed afterwards).", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Offline demo on the shipped example clips: ingest, query with a degraded copy, decrypt."""
    from speechvault.demo import run_demo

    err = kit.stderr()
    on_step = None if as_json else (lambda msg: err.print(f"[dim]-[/dim] {msg}"))
    report = run_demo(workdir, on_step=on_step)
    if as_json:
        kit.print_json(report)
    else:
        tables.print_demo(report)
    if not report.ok:
        why = ("ingest errors" if report.errors else "the degraded query did not match its original"
               if not report.correct else "the decrypted file differs from the original")
        kit.err_line(f"demo failed: {why}")
        raise typer.Exit(1)


# --------------------------------------------------------------------------- train
class Arch(str, Enum):
    cnn = "cnn"
    crnn = "crnn"


class InputMode(str, Enum):
    native = "native"
    paper = "paper"


class _TrainPrinter:
    """model_export.train progress hook: one line per stage step and per epoch, on stderr."""

    def __init__(self) -> None:
        self.err = kit.stderr()

    def on_stage(self, stage: str, done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            self.err.print(f"  {stage}: {done}/{total}")

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        parts = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "seconds")
        self.err.print(f"epoch {epoch}: {parts} ({logs.get('seconds', 0):.0f} s)")


@_command()
def train(
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", show_default=False,
                                             help="One sub-folder of audio files per category "
                                                  "(e.g. FSDD sorted by digit).")],
    out: Annotated[Path, typer.Option("--out", "-o", show_default=False,
                                      help="Output folder, or a path ending in .tflite.")],
    arch: Annotated[Arch, typer.Option(help="Coding model (paper Fig. 6).")] = Arch.cnn,
    bits: Annotated[int, typer.Option(help="Hash length K: 64, 128, 256, 384 or 512.")] = 384,
    input_mode: Annotated[InputMode, typer.Option(help="native (128 mel x frames) or paper "
                                                       "(224x224x3 image).")] = InputMode.native,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs (early stopping).")] = 40,
    holdout_speaker: Annotated[Optional[list[str]], typer.Option(
        help="Speaker held out completely (test); repeatable.", show_default=False)] = None,
    val_speaker: Annotated[Optional[list[str]], typer.Option(
        help="Speaker for validation / early stopping; repeatable.", show_default=False)] = None,
    val_pattern: Annotated[Optional[str], typer.Option(
        help="Validation files by name: a glob, or 're:REGEX'.", show_default=False)] = None,
    test_pattern: Annotated[Optional[str], typer.Option(
        help="Held-out test files by name.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    augment: Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="CPO augmentation of the training clips.")] = True,
    n_aug: Annotated[int, typer.Option(min=0, help="Random CPO copies per training clip.")] = 2,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    patience: Annotated[int, typer.Option(min=1, help="Early-stopping patience (epochs).")] = 6,
    max_train_per_class: Annotated[Optional[int], typer.Option(
        min=1, help="Train on a subset (e.g. for the paper input mode).", show_default=False)] = None,
    threads: Annotated[int, typer.Option(min=1, help="TensorFlow threads.")] = 2,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Feature cache (default $SPEECHVAULT_CACHE or ~/.cache/speechvault).",
        show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option(help="Model name.", show_default=False)] = None,
    data_name: Annotated[Optional[str], typer.Option(help="Dataset name for the metadata.",
                                                     show_default=False)] = None,
    license: Annotated[Optional[str], typer.Option("--license", help="Licence credit of the data.",
                                                   show_default=False)] = None,
    report_dir: Annotated[Optional[Path], typer.Option(
        help="Where the curves go (default: next to the model).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and export a model (needs: pip install 'speechvault\\[train]')."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise RuntimeMissingError(
            "training needs TensorFlow: pip install 'speechvault[train]' (or tensorflow-cpu)")
    if not data_dir.is_dir():
        raise NotFoundError(f"{data_dir}: no such folder")
    holdout_speaker, val_speaker = holdout_speaker or [], val_speaker or []
    if holdout_speaker and test_pattern:
        raise InvalidInputError("give --holdout-speaker or --test-pattern, not both")
    if val_speaker and val_pattern:
        raise InvalidInputError("give --val-speaker or --val-pattern, not both")

    from model_export import dataset as ds
    from model_export.train import train as run_train

    result = run_train(
        data_dir, out, arch=arch.value, K=bits, input_mode=input_mode.value, epochs=epochs,
        val_split={"speakers": val_speaker} if val_speaker else val_pattern,
        test_split={"speakers": holdout_speaker} if holdout_speaker else test_pattern,
        seed=seed, augment=augment, n_aug=n_aug, batch_size=batch_size, learning_rate=lr,
        patience=patience, max_train_per_class=max_train_per_class,
        cache_dir=cache_dir or ds.default_cache_dir(), threads=threads, name=name,
        progress=None if as_json else _TrainPrinter(),
        command="speechvault " + " ".join(__import__("shlex").quote(a) for a in sys.argv[1:]),
        data_name=data_name, license=license, report_dir=report_dir,
    )
    if as_json:
        kit.print_json(result)
        return
    con = kit.stdout()
    con.print(f"model [bold]{result.name}[/bold]: {result.tflite_path} (+ {result.meta_path})")
    con.print(f"best epoch {result.best_epoch} of {result.epochs_run}, {result.seconds:.0f} s")
    for k, v in (result.metrics or {}).items():
        if isinstance(v, (int, float)):
            con.print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    con.print(f"curves: {result.curves_csv}" + (f", {result.curves_png}" if result.curves_png else ""))


# --------------------------------------------------------------------------- ssh-serve
@_command(name="ssh-serve")
def ssh_serve(
    vault: VaultArg,
    max_mb: Annotated[int, typer.Option("--max-mb", min=1, help="Largest query accepted on "
                                        "stdin, MiB.")] = 110,
) -> None:
    """The sshd ForceCommand of a search-only account (docs/ssh.md): `ssh HOST search < q.wav`
    (or `search --json`) searches with the audio piped in; `ssh -t HOST` opens the read-only TUI;
    anything else is refused."""
    from speechvault.ssh_serve import read_query, remote_request

    action, as_json = remote_request(os.environ.get("SSH_ORIGINAL_COMMAND"))
    if action == "tui":
        _run_tui(vault, write=False, key_file=None, paths="none")  # no server path at all
        return
    data = read_query(sys.stdin, max_mb * 1024 * 1024)
    with _open(vault) as v:
        result = v.search(data)
    if as_json:
        kit.print_json(kit.jsonable(result))
    else:
        tables.print_search(result, [])


# --------------------------------------------------------------------------- tui
@_command()
def tui(
    vault: VaultArg,
    write: Annotated[bool, typer.Option(
        "--write", "-w", help="Allow ingest and delete (the file is opened read-write only while "
        "they run); default: browse and search only.")] = False,
    key_file: KeyFileOpt = None,
    root: Annotated[Optional[Path], typer.Option(
        "--root", metavar="DIR", show_default=False,
        help="Only files under DIR may be named (path completion, the ingest tree, queries, "
             "exports); default: anything this account can read.")] = None,
) -> None:
    """Open the vault in the terminal user interface (needs a terminal: over SSH, ssh -t)."""
    _run_tui(vault, write=write, key_file=key_file, paths=root)


def _run_tui(vault: Path, *, write: bool, key_file: Optional[Path],
             paths: Optional[Path] | str) -> None:
    """The TUI on ``vault``; ``paths``: a root folder, None (anywhere) or "none" (ssh-serve)."""
    from hashing.quiet import set_native_silencing
    from speechvault.path_policy import PathPolicy

    policy = (PathPolicy.nothing() if paths == "none" else
              PathPolicy.anywhere() if paths is None else PathPolicy.under(paths))
    from tui.terminal import require_terminal

    set_native_silencing(False)  # Textual draws on fd 2: a decode must not blank it
    _existing_vault(vault)
    require_terminal()
    try:
        from tui import app as tui_app
    except ModuleNotFoundError as exc:
        if exc.name in ("tui.app", "tui", "textual"):
            raise InvalidInputError(
                "the terminal UI is not available in this build (tui.app is missing)") from None
        raise
    passphrase = None
    from store.vault import Vault

    if Vault.index_is_encrypted(vault):  # the TUI cannot even list it without the passphrase
        passphrase = _index_passphrase(key_file)
    status = tui_app.run(str(vault), key_file=None if key_file is None else str(key_file),
                         read_only=not write, passphrase=passphrase, paths=policy)
    if status:
        raise typer.Exit(status)


def main() -> None:
    """Console-script entry point (``speechvault = "cli:main"``)."""
    from commands.help_format import fold_long_words, wants_help

    if wants_help(sys.argv) and sys.stdout.isatty():  # rich help only on a terminal
        fold_long_words()  # a long option name or install line is folded, never cut with "…"
    try:
        # the name in Usage lines and of the completion variable (_SPEECHVAULT_COMPLETE), also
        # when run as `python -m cli`
        app(prog_name="speechvault")
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        sys.exit(130)


def _register_experiments() -> None:
    from commands.experiments import COMMANDS

    for name, func in COMMANDS:
        _command(name)(func)


_register_experiments()


if __name__ == "__main__":
    main()
