"""The rich tables the command line prints (``cli.py`` stays one library call per command):
what ``ingest`` added and skipped, a ``search`` result with where an excerpt was found, a vault's
``info``, the ``demo`` report. rich is imported inside each function, so ``speechvault --help``
never pays for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from commands import kit

__all__ = ["fmt_num", "skipped_rows", "print_ingest", "evidence_text", "print_search",
           "print_info", "print_demo"]

MAX_ROWS_SHOWN = 50  # ingest summary: rows listed before "... and N more"


def fmt_num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def skipped_rows(skipped: list[Path]) -> list[dict[str, str]]:
    from speechvault.sources import skip_reason

    return [{"path": str(p), "reason": skip_reason(p)} for p in skipped]


def print_ingest(report: Any, n_errors: int, skipped: list[Path]) -> None:
    from rich.table import Table

    con = kit.stdout()
    shown = report.added[:MAX_ROWS_SHOWN]
    if shown:
        t = Table(title="added", title_justify="left")
        for col in ("id", "name", "category", "duration", "size", "windows"):
            t.add_column(col, justify="right" if col in ("id", "duration", "size", "windows") else "left")
        for r in shown:
            t.add_row(str(r.id), str(r.name), str(r.category), kit.fmt_secs(r.duration),
                      kit.fmt_size(r.size), str(r.n_windows))
        con.print(t)
        if len(report.added) > len(shown):
            con.print(f"... and {len(report.added) - len(shown)} more (see list or --json)")
    s = Table(show_header=True)
    s.add_column("added", justify="right", style="green")
    s.add_column("duplicates", justify="right", style="yellow")
    s.add_column("errors", justify="right", style="red")
    s.add_column("skipped", justify="right", style="yellow")
    s.add_row(str(len(report.added)), str(len(report.skipped_duplicates)), str(n_errors),
              str(len(skipped)))
    con.print(s)
    for path, existing in report.skipped_duplicates[:MAX_ROWS_SHOWN]:
        con.print(f"[yellow]duplicate[/yellow] {path} (already stored as id {existing})")
    from rich.markup import escape

    for row in skipped_rows(skipped[:MAX_ROWS_SHOWN]):
        con.print(f"[yellow]skipped[/yellow] {escape(row['path'])} ({row['reason']})")
    if len(skipped) > MAX_ROWS_SHOWN:
        con.print(f"... and {len(skipped) - MAX_ROWS_SHOWN} more skipped (see --json)")


def evidence_text(hit: Any) -> str:
    """'0.83 (18 win)', with the near-identical windows when some are ('-0.41 (18 win, 3 near)'):
    a match may rest on those alone (``ExcerptRule.min_strong_windows``)."""
    near = getattr(hit, "near_identical", None) or 0.0
    extra = f", {near:g} near" if near >= 1.0 else ""
    return f"{hit.evidence:.2f} ({hit.windows} win{extra})"


def print_search(result: Any, written: list[str]) -> None:
    from rich.table import Table

    con = kit.stdout()
    tau = float(result.tau)
    fb = " (nothing in the category: every row searched)" if getattr(result, "fell_back", False) else ""
    rule = result.excerpt_rule()
    con.print(f"mode [bold]{result.mode}[/bold]{fb}   "
              + (f"tau {tau:.3f}   " if rule is None else "")
              + f"query category [bold]{result.query_category}[/bold]")
    bound = None if rule is None else result.rule.get("best_ber_under")  # --threshold's
    if rule is not None:  # an excerpt matches by its evidence over the windows, not by tau
        con.print(f"excerpt match: {rule.summary()}"
                  + ("" if bound is None else f"; best window < {float(bound):.3f}"))
    from speechvault.hit_rows import shown_hits

    hits = shown_hits(result)  # the matches, then their nearest neighbours up to --top
    if not hits and getattr(result, "total_rows", 1) == 0 and not getattr(result, "candidates", 0):
        con.print("no match (nearest shown: none; no window of the vault is near the query)")
    elif not hits:
        con.print("no match (no candidates in the vault)")
    else:
        t = Table()
        t.add_column("#", justify="right")
        t.add_column("id", justify="right")
        t.add_column("name")
        t.add_column("category")
        t.add_column("BER", justify="right")
        located = any(getattr(h, "offset", None) is not None for h in hits)
        from speechvault.clock import clock

        if located:  # excerpt search: where the query was found, and on how much evidence
            t.add_column("found at", justify="right")
            t.add_column("evidence", justify="right")
        else:
            t.add_column("window", justify="right")
        t.add_column("match")
        matches_done = False
        for i, h in enumerate(hits, 1):
            if not h.is_match and not matches_done:
                matches_done = True
                if i > 1:
                    t.add_section()
            style = "bold green" if h.is_match else "dim"
            where = ([clock(h.offset), evidence_text(h)] if located else [str(h.window)])
            t.add_row(str(i), str(h.recording_id), str(h.name), str(h.category),
                      f"{float(h.ber):.4f}", *where, "MATCH" if h.is_match else "", style=style)
        con.print(t)
        if not result.matched and rule is not None:
            con.print("no match (nearest shown; none with the evidence the excerpt rule asks"
                      + ("" if bound is None else f" and a window under {float(bound):.3f}") + ")")
        elif not result.matched:
            con.print(f"no match (nearest shown; none under tau {tau:.3f})")
        else:
            n = sum(1 for h in hits if h.is_match)
            con.print(f"[green]{n} match{'es' if n != 1 else ''}[/green]")
    timings = dict(result.timings or {})
    if timings:
        order = ["model_load", "decode", "features", "inference", "category_stage", "hamming_stage", "total"]
        keys = [k for k in order if k in timings] + [k for k in timings if k not in order]
        con.print("timings: " + "  ".join(f"{k} {kit.fmt_ms(timings[k])}" for k in keys))
    for w in written:
        con.print(f"decrypted -> {w}")


def print_info(info: Any, counts: dict) -> None:
    from rich.table import Table

    d = kit.jsonable(info)
    t = Table(show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    if isinstance(d, dict):
        for k, val in d.items():
            if k == "category_counts":
                counts = counts or val
                continue
            if isinstance(val, (dict, list)):
                val = json.dumps(val, ensure_ascii=False)
            t.add_row(str(k), str(val))
    else:
        t.add_row("info", str(d))
    con = kit.stdout()
    con.print(t)
    if counts:
        c = Table()
        c.add_column("category")
        c.add_column("count", justify="right")
        for k, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
            c.add_row(str(k), str(n))
        con.print(c)


def print_demo(r: Any) -> None:
    from rich.table import Table

    con = kit.stdout()
    t = Table(show_header=False, title="speechvault demo", title_justify="left")
    t.add_column("k", style="bold")
    t.add_column("v")
    t.add_row("model", f"{r.model_name} (sha256 {r.model_sha256[:12]})")
    t.add_row("vault", f"{r.vault_path}" + ("" if r.kept else " (temporary, removed)"))
    if r.key_file:
        t.add_row("key file", f"{r.key_file} (the passphrase, mode 0600: --key-file)")
    t.add_row("cipher / kdf", f"{r.cipher} / scrypt 2^{r.kdf_log2n}")
    t.add_row("ingested", f"{r.added} of {r.n_clips} clips ({r.duplicates} duplicates, {len(r.errors)} errors)")
    t.add_row("query", f"{r.query_source}, degraded: {r.degradation}")
    t.add_row("best hit", f"{r.top_name}  BER {r.top_ber:.4f}  "
              f"({r.decision or f'tau {r.tau:.3f}'}, {r.mode})"
              if r.top_ber is not None else "none")
    t.add_row("result", "[green]match, correct recording[/green]" if r.correct
              else "[red]no correct match[/red]")
    t.add_row("decrypted", "[green]byte-identical (sha256 " + str(r.original_sha256)[:16] + "...)[/green]"
              if r.byte_identical else "[red]not identical / not decrypted[/red]")
    t.add_row("timings", "  ".join(f"{k} {kit.fmt_secs(v)}" for k, v in r.timings.items()))
    con.print(t)
    if r.hits:
        h = Table(title="hits", title_justify="left")
        for col in ("id", "name", "category", "BER", "match"):
            h.add_column(col, justify="right" if col in ("id", "BER") else "left")
        for hit in r.hits[:5]:
            style = "bold green" if hit.get("is_match") else "dim"
            h.add_row(str(hit.get("recording_id")), str(hit.get("name")), str(hit.get("category")),
                      f"{float(hit.get('ber', float('nan'))):.4f}", "MATCH" if hit.get("is_match") else "",
                      style=style)
        con.print(h)
