"""What every speechvault command shares: output to a terminal or a pipe, the one place where
library errors become ``error: ...`` and exit 1, progress bars, the ``--json`` option, the
command line a report quotes, ``--model`` lookup. ``cli`` (the user's commands) and
``commands.experiments`` (the paper's experiments and the benchmarks) are built on it.

Light at import (typer only): ``speechvault --help`` must stay fast (``tests/test_startup.py``).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

from speechvault.errors import NotFoundError, SpeechVaultError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]

#: width of output that goes to a file or a pipe: wide enough never to wrap a table row, so
#: `list | grep` sees whole names and `cipher-report > r.md` keeps its table intact
PLAIN_WIDTH = 10_000


def console(stderr: bool = False):
    """A rich console; to a terminal it fits the terminal, to a file or pipe it never wraps
    (unless $COLUMNS says how wide to be)."""
    from rich.console import Console

    con = Console(stderr=stderr, soft_wrap=False, highlight=False)
    if con.is_terminal or (os.environ.get("COLUMNS") or "").isdigit():
        return con
    return Console(stderr=stderr, soft_wrap=False, highlight=False, width=PLAIN_WIDTH)


def stdout():
    return console()


def stderr():
    return console(stderr=True)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def err_line(message: str) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def warn(messages: list[str]) -> None:
    for m in messages:
        sys.stderr.write(f"warning: {one_line(m)}\n")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array
        return obj.tolist()
    if hasattr(obj, "isoformat") and callable(obj.isoformat):
        return obj.isoformat()
    return obj


def attr(obj: Any, *names: str, default: Any = None) -> Any:
    """First present attribute (or dict key) among ``names``."""
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def fmt_size(n: Any) -> str:
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_secs(x: Any) -> str:
    try:
        return f"{float(x):.2f} s"
    except (TypeError, ValueError):
        return "-"


def fmt_ms(x: Any) -> str:
    try:
        return f"{float(x) * 1000:.1f} ms"
    except (TypeError, ValueError):
        return "-"


# --------------------------------------------------------------------------- commands
def command_decorator(app: typer.Typer) -> Callable:
    """``app.command`` plus the one place where user errors become ``error: ...`` + exit 1: the
    decorator factory every command of ``app`` is registered with."""

    def command(*args: Any, **kwargs: Any) -> Callable:

        def decorate(func: Callable) -> Callable:
            @functools.wraps(func)
            def wrapper(*a: Any, **k: Any) -> Any:
                from hashing.quiet import set_native_silencing

                set_native_silencing(True)  # decoder messages off fd 2 (``tui`` turns it off again)
                try:
                    return func(*a, **k)
                except SpeechVaultError as exc:
                    err_line(str(exc))
                    raise typer.Exit(1) from None
                except OSError as exc:  # a user path we write or read ourselves (export -o, ...)
                    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                    err_line(f"{where}{exc.strerror or exc}")
                    raise typer.Exit(1) from None
                except KeyboardInterrupt:
                    sys.stderr.write("\ninterrupted\n")
                    raise typer.Exit(130) from None

            wrapper.__doc__ = help_text(func.__doc__)
            app.command(*args, **kwargs)(wrapper)
            return func

        return decorate


    return command


def help_text(doc: str | None) -> str | None:
    """A docstring as ``--help`` text: the lines of a paragraph joined (rich mode keeps every
    source line break, so help showed lines cut in the middle at 100 columns), paragraphs kept."""
    if not doc:
        return doc
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def progress(label: str, enabled: bool):
    """A rich progress bar on stderr (None when disabled or stderr is not a terminal)."""
    if not enabled:
        return None
    console = stderr()
    if not console.is_terminal:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    )


def progress_callback(progress, task_id) -> Callable[[Any], None]:
    """Adapt the library's progress events (IngestEvent, verify events) to a rich task."""

    def on_event(event: Any) -> None:
        total = attr(event, "total")
        done = attr(event, "done", "completed", "index", "n_done")
        path = attr(event, "path", "name", "source")
        kw: dict[str, Any] = {}
        if total is not None:
            kw["total"] = total
        if done is not None:
            kw["completed"] = done
        else:
            kw["advance"] = 1
        if path is not None:
            kw["description"] = Path(str(path)).name[:40]
        progress.update(task_id, **kw)

    return on_event


def model_encoder(model: str):
    """``--model``: a file path if one exists there, else a shipped model by its file name
    (``models``) or by the name in its metadata (what ``info`` shows, e.g. the default's)."""
    from hashing.encoder import Encoder, model_summaries, shipped_models

    path = Path(model)
    if path.is_file():
        return Encoder.from_files(path)
    if model in shipped_models():
        return Encoder.shipped(model)
    by_meta_name = {row["model"]: row["name"] for row in model_summaries()}
    if model in by_meta_name:
        return Encoder.shipped(by_meta_name[model])
    raise NotFoundError(f"{model}: no such model file or shipped model "
                        f"(shipped: {', '.join(shipped_models())})")


def cmdline(name: str, positional: Any, options: list[tuple[str, Any]]) -> str:
    """The command as typed (rebuilt from the parsed values: sys.argv is not the command under
    CliRunner or the TUI), for the top of the report."""
    import shlex

    parts = ["speechvault", name] + ([str(positional)] if positional is not None else [])
    for flag, value in options:
        if value is True:
            parts.append(flag)
        elif value not in (None, False):
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)
