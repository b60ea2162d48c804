"""The ablation table of issue 16: what each training lever buys on held-out speakers.

    python -m model_export.loso_ablation RUN1/loso.json RUN2/loso.json ... --reference diverse
    python -m model_export.loso_ablation RUN/loso.json --curves

Reads the ``loso.json`` of several ``model_export.loso`` runs (one lever each, same epochs, K
and seed) and writes one markdown table: per model (row name such as ``diverse+cmvn``) the mean
and spread over the held-out speakers it was run on, and its paired change against the
reference model *on the same speakers* (runs screened on a few folds are only compared where
both exist). Kept apart from ``loso.py``, which runs folds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from speechvault.errors import InvalidInputError

__all__ = ["collect", "ablation_markdown", "epoch_curves_markdown", "main"]

COLUMNS = (("h1 acc", ("fsdd", "h1_accuracy")), ("mAP@K h2", ("fsdd", "mAP_h2")),
           ("auto -> trav.", ("fsdd", "retrieval", "auto_traversal_share")),
           ("espeak h1", ("espeak_test", "h1_accuracy")))


def _get(row: dict, path: tuple[str, ...]) -> float:
    v = row
    for k in path:
        v = v[k]
    return float(v)


def _runs(paths: Sequence[Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            out.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{p}: not a loso.json ({exc})") from exc
    return out


def collect(paths: Sequence[Path]) -> dict[str, dict[str, dict]]:
    """{model: {held-out speaker: row}} over the runs; held-out rows only (not "seen"). A model
    name that runs with different epoch budgets produced (the same recipe at 8 and 16 epochs)
    is split into ``name@<epochs>ep`` rows, so that neither overwrites the other."""
    runs = _runs(paths)
    budgets: dict[str, set] = {}
    for res in runs:
        for r in res.get("rows", []):
            budgets.setdefault(r["model"], set()).add(res.get("epochs"))
    out: dict[str, dict[str, dict]] = {}
    for res in runs:
        for r in res.get("rows", []):
            if r.get("seen"):
                continue
            row = dict(r, epochs=res.get("epochs"), K=res.get("K"))
            name = r["model"] if len(budgets[r["model"]]) == 1 else f"{r['model']}@{res.get('epochs')}ep"
            out.setdefault(name, {})[r["held_out"]] = row
    return out


def epoch_curves_markdown(paths: Sequence[Path]) -> str:
    """Per run and model: the held-out speaker's h1 and mAP after each epoch (mean over the
    folds that ran it; recorded by ``loso --watch-held-out``), and the epoch the validation
    loss chose. Shows whether more epochs help a new voice; nothing here chooses anything."""
    L = ["| model | epoch | folds | held-out h1 (mean) | held-out mAP (mean) | val loss (mean) | chosen by val loss in |",
         "|---|---|---|---|---|---|---|"]
    for res in _runs(paths):
        by_model: dict[str, dict[str, list]] = {}
        for key, hist in res.get("histories", {}).items():
            spk, model = key.split("/", 1)
            if hist and "held_out_h1" in hist[0]:
                by_model.setdefault(model, {})[spk] = hist
        for model, folds in by_model.items():
            chosen = {s: int(np.argmin([h["val_loss"] for h in hs])) + 1 for s, hs in folds.items()}
            for ep in range(1, max(len(h) for h in folds.values()) + 1):
                at = {s: hs[ep - 1] for s, hs in folds.items() if len(hs) >= ep}
                picked = ", ".join(s for s in sorted(at) if chosen[s] == ep) or "-"
                L.append(f"| {model} | {ep} | {len(at)} | "
                         f"{np.mean([h['held_out_h1'] for h in at.values()]):.3f} | "
                         f"{np.mean([h['held_out_mAP'] for h in at.values()]):.3f} | "
                         f"{np.mean([h['val_loss'] for h in at.values()]):.3f} | {picked} |")
    return "\n".join(L) + "\n"


def ablation_markdown(models: dict[str, dict[str, dict]], reference: str) -> str:
    if reference not in models:
        raise InvalidInputError(f"reference model {reference!r} is in none of the runs")
    ref = models[reference]
    head = " | ".join(f"{n} (mean ± sd)" for n, _ in COLUMNS)
    L = [f"| model | epochs | held out | {head} | Δ h1 vs {reference} (same folds) | Δ mAP vs {reference} |",
         "|---|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for name, rows in models.items():
        spk = sorted(rows)
        cells = []
        for _, path in COLUMNS:
            v = [_get(rows[s], path) for s in spk]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}")
        common = [s for s in spk if s in ref]
        deltas = []
        for path in (("fsdd", "h1_accuracy"), ("fsdd", "mAP_h2")):
            d = [_get(rows[s], path) - _get(ref[s], path) for s in common]
            deltas.append(f"{np.mean(d):+.3f} (n={len(d)}, {sum(x > 0 for x in d)} up)" if d and name != reference
                          else "-")
        ep = "shipped" if name == "default" else "/".join(str(e) for e in sorted({rows[s]["epochs"] for s in spk}))
        L.append(f"| {name} | {ep} | {', '.join(spk)} | " + " | ".join(cells)
                 + f" | {deltas[0]} | {deltas[1]} |")
    return "\n".join(L) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.loso_ablation", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="loso.json files")
    p.add_argument("--reference", default="diverse")
    p.add_argument("--out", default=None, help="write the table here (default: stdout)")
    p.add_argument("--curves", action="store_true", help="instead: the held-out figures per epoch "
                   "of runs made with --watch-held-out")
    a = p.parse_args(argv)
    try:
        paths = [Path(x) for x in a.runs]
        md = epoch_curves_markdown(paths) if a.curves else ablation_markdown(collect(paths), a.reference)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if a.out:
        Path(a.out).write_text(md)
    else:
        print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
