"""The ablation table of issue 16: what each training lever buys on held-out speakers.

    python -m model_export.loso_ablation RUN1/loso.json RUN2/loso.json ... --reference diverse

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

__all__ = ["collect", "ablation_markdown", "main"]

COLUMNS = (("h1 acc", ("fsdd", "h1_accuracy")), ("mAP@K h2", ("fsdd", "mAP_h2")),
           ("auto -> trav.", ("fsdd", "retrieval", "auto_traversal_share")),
           ("espeak h1", ("espeak_test", "h1_accuracy")))


def _get(row: dict, path: tuple[str, ...]) -> float:
    v = row
    for k in path:
        v = v[k]
    return float(v)


def collect(paths: Sequence[Path]) -> dict[str, dict[str, dict]]:
    """{model: {held-out speaker: row}} over the runs; held-out rows only (not "seen")."""
    out: dict[str, dict[str, dict]] = {}
    for p in paths:
        try:
            res = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{p}: not a loso.json ({exc})") from exc
        for r in res.get("rows", []):
            if r.get("seen"):
                continue
            row = dict(r, epochs=res.get("epochs"), K=res.get("K"))
            out.setdefault(r["model"], {})[r["held_out"]] = row
    return out


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
    a = p.parse_args(argv)
    try:
        md = ablation_markdown(collect([Path(x) for x in a.runs]), a.reference)
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
