"""Batch search: ``speechvault search VAULT Q1 Q2 DIR 'glob*' -`` answers every query in one
process, with one vault connection and one model load.

Why (issue 13): ``search`` used to take one file, so 30 queries in a shell loop paid 30 process
start-ups and 30 model loads (92 s measured); here the model loads once and each further query
costs its decode, features, inference and SQL only.

What a query argument means: a file; a folder (its audio files, sorted; sub-folders with
``--recursive``); a glob pattern; ``-`` for audio on stdin (once). One argument naming one file
(or ``-``) is a single search and prints exactly what ``search`` always printed; anything else
is a batch:

* ``--json``: JSON Lines on stdout, one object per query as it is answered, in argument order:
  ``{"query": PATH, ...the single-search object...}``, or ``{"query": PATH, "error": MESSAGE}``;
* otherwise one table row per query (best hit, its BER, the time) and a summary line;
* a progress bar on stderr when stderr is a terminal;
* a query that cannot be answered (missing, not audio, empty stdin) gives one ``error:`` line
  on stderr and the others are still answered; the exit status is then 1. A failure of the
  vault or the model (not of one query) stops the batch like any other command error.

The search itself is ``Vault.search``, one call per query; nothing here touches SQL or codes.

No ``--jobs``: on the 2-core development machine two processes of 50 queries each took 4.44 s
and 3.44 s against 2.60 s and 3.33 s for one process of 100 (1 s clips, 10k vault, other load
~6.7 on the machine), so parallel workers were not added.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from speechvault.errors import AudioDecodeError, InvalidInputError, NotFoundError
from speechvault.sources import GLOB_CHARS, expand_sources

__all__ = ["STDIN", "QueryOutcome", "is_batch", "plan_queries", "search_queries",
           "read_stdin_audio", "Decryptor", "run_batch_search"]

#: the query argument that means "audio on stdin"
STDIN = "-"
#: failures that belong to one query (the batch goes on); anything else stops it
QUERY_ERRORS = (AudioDecodeError, NotFoundError, InvalidInputError)


def is_batch(args: list[str]) -> bool:
    """False when the arguments name one query the way ``search`` always took it (one file, a
    path that does not exist - reported as before - or ``-``): its output stays as it was."""
    if len(args) != 1:
        return True
    arg = args[0]
    if arg == STDIN:
        return False
    p = Path(arg)
    return p.is_dir() or (not p.exists() and bool(GLOB_CHARS & set(arg)))


@dataclasses.dataclass
class QueryOutcome:
    """One query's answer: ``result`` (a ``SearchResult``) or ``error`` (one line)."""

    query: str
    result: Any = None
    error: Optional[str] = None
    decrypted: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self, with_decrypted: bool = False) -> dict[str, Any]:
        if self.error is not None:
            return {"query": self.query, "error": self.error}
        d = {"query": self.query, **self.result.to_dict()}
        if with_decrypted:
            d["decrypted"] = list(self.decrypted)
        return d


def plan_queries(args: list[str], recursive: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Query arguments -> (queries in order, [(argument, problem), ...]). Files keep the path
    as the user wrote it (or as the folder/pattern produced it); ``-`` may appear once."""
    queries: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()  # a file named twice (or by a folder and a pattern) is one query
    for raw in args:
        if raw == STDIN:
            if STDIN in queries:
                problems.append((raw, "stdin can be read only once"))
            else:
                queries.append(STDIN)
            continue
        found = expand_sources([raw], recursive)
        problems += found.problems
        for f in found.files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                queries.append(str(f))
    return queries, problems


def read_stdin_audio(stdin=None) -> bytes:
    """The audio bytes piped to us; refuses a terminal (nothing would ever arrive)."""
    stream = sys.stdin if stdin is None else stdin
    if hasattr(stream, "isatty") and stream.isatty():
        raise InvalidInputError("-: stdin is a terminal; pipe audio into it (… < query.wav)")
    data = getattr(stream, "buffer", stream).read()
    if not data:
        raise AudioDecodeError("-: no audio on stdin (0 bytes)")
    return bytes(data)


class Decryptor:
    """``--decrypt-to``: write each match once into ``folder`` as ``<id>_<name>``; a recording
    several queries match is written the first time and listed each time."""

    def __init__(self, folder: Path, passphrase: str) -> None:
        self.folder = Path(folder)
        self._passphrase = passphrase
        self._written: dict[int, str] = {}

    def __call__(self, vault, result) -> list[str]:
        matches = [h for h in result.hits if h.is_match]
        if not matches:
            return []
        if not vault.unlocked:
            vault.unlock(self._passphrase)
        self.folder.mkdir(parents=True, exist_ok=True)
        out = []
        for h in matches:
            rid = int(h.recording_id)
            if rid not in self._written:
                dest = self.folder / f"{rid}_{Path(str(h.name)).name}"
                self._written[rid] = str(vault.export_to(rid, dest))
            out.append(self._written[rid])
        return out


def search_queries(vault, queries: Iterable[str], *, tau: Optional[float] = None,
                   mode: str = "auto", probe: int = 2, top: int = 10, stdin=None,
                   decrypt: Optional[Decryptor] = None) -> Iterator[QueryOutcome]:
    """Answer each query with ``vault.search`` (the model loads on the first one), in order.
    A vault that answers a batch at once (a lake on Spark: ``prepare_batch``) codes the files
    first and runs one job; each search then takes its answer."""
    queries = list(queries)
    prepare = getattr(vault, "prepare_batch", None)
    coded = prepare([q for q in queries if q != STDIN], mode=mode, probe=probe,
                    top=top) if prepare is not None else {}
    for q in queries:
        try:
            source = read_stdin_audio(stdin) if q == STDIN else coded.get(q, Path(q))
            result = vault.search(source, tau=tau, mode=mode, probe=probe, top=top)
            written = decrypt(vault, result) if decrypt is not None else []
            yield QueryOutcome(q, result, None, written)
        except QUERY_ERRORS as exc:
            msg = exc.message
            yield QueryOutcome(q, error=msg if msg.startswith(q) else f"{q}: {msg}")
        except OSError as exc:
            yield QueryOutcome(q, error=f"{q}: {exc.strerror or exc}")


# --------------------------------------------------------------------------- the command
def run_batch_search(args: list[str], open_vault: Callable[[], Any], *, tau: Optional[float],
                     mode: str, probe: int, top: int, recursive: bool = False,
                     decrypt_to: Optional[Path] = None, passphrase: Optional[str] = None,
                     as_json: bool = False, stdin=None, stdout=None, stderr=None) -> int:
    """``speechvault search`` with several queries: print as described in the module docstring
    and return the exit status (0, or 1 when a query or an argument failed)."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    queries, problems = plan_queries(args, recursive)
    for raw, problem in problems:
        _err(err, f"{raw}: {problem}")
    if not queries:
        raise InvalidInputError("nothing to search: no query file")
    decrypt = Decryptor(decrypt_to, passphrase) if decrypt_to is not None else None
    t0 = time.perf_counter()
    outcomes: list[QueryOutcome] = []
    with open_vault() as vault, _Progress(err, len(queries)) as progress:
        for o in search_queries(vault, queries, tau=tau, mode=mode, probe=probe, top=top,
                                stdin=stdin, decrypt=decrypt):
            outcomes.append(o)
            if o.error is not None:
                progress.error(o.error)
            if as_json:
                out.write(json.dumps(o.to_dict(decrypt is not None), ensure_ascii=False) + "\n")
                out.flush()
            progress.advance(o.query)
    if not as_json:
        _print_table(out, outcomes, time.perf_counter() - t0)
    return 1 if problems or any(o.error for o in outcomes) else 0


def _err(stream, message: str) -> None:
    stream.write(f"error: {' '.join(str(message).split())}\n")
    stream.flush()


class _Progress:
    """A rich progress bar on stderr when it is a terminal (else nothing); error lines go above
    the bar so they are not overwritten."""

    def __init__(self, stream, total: int) -> None:
        self._stream, self._total, self._bar, self._task = stream, total, None, None

    def __enter__(self) -> "_Progress":
        if hasattr(self._stream, "isatty") and self._stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
                TimeElapsedColumn

            console = Console(file=self._stream, highlight=False)
            self._bar = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self._total)
        return self

    def advance(self, query: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=Path(query).name[:40])

    def error(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(f"error: {' '.join(message.split())}", markup=False)
        else:
            _err(self._stream, message)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _print_table(stream, outcomes: list[QueryOutcome], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for col, right in (("#", True), ("query", False), ("match", False), ("id", True),
                       ("name", False), ("category", False), ("BER", True), ("ms", True)):
        t.add_column(col, justify="right" if right else "left",
                     overflow="fold" if col in ("query", "name") else "ellipsis")
    load = 0.0
    for i, o in enumerate(outcomes, 1):
        if o.error is not None:
            t.add_row(str(i), o.query, "error", "", "", "", "", "", style="red")
            continue
        r = o.result
        load += float(r.timings.get("model_load", 0.0))
        h = r.hits[0] if r.hits else None
        t.add_row(str(i), o.query, "MATCH" if r.matched else "no match",
                  "" if h is None else str(h.recording_id), "" if h is None else str(h.name),
                  "" if h is None else str(h.category), "" if h is None else f"{float(h.ber):.4f}",
                  f"{1e3 * float(r.timings.get('total', 0.0)):.1f}",
                  style="bold green" if r.matched else "dim")
    con = Console(file=stream, soft_wrap=False, highlight=False)
    con.print(t)
    n_ok = sum(1 for o in outcomes if o.error is None)
    n_match = sum(1 for o in outcomes if o.error is None and o.result.matched)
    rate = len(outcomes) / seconds if seconds > 0 else 0.0
    con.print(f"{len(outcomes)} queries: {n_match} matched, {n_ok - n_match} no match, "
              f"{len(outcomes) - n_ok} errors; {seconds:.2f} s ({rate:.1f} queries/s, model load "
              f"{1e3 * load:.0f} ms)")
