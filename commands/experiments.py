"""The commands that reproduce the paper's experiments and measure the product: ``eval``
(Tables 1-3, 5), ``eval-loso`` (issue 16), ``eval-identify`` (issue 12), ``bench`` (Table 4 and
the speed targets), ``cipher-report`` (the cipher's security figures). ``cli`` registers them
after the user's commands (``COMMANDS``), so they keep their names and their place in
``--help`` while ``cli.py`` holds what a vault's user runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands import kit
from commands.kit import JsonOpt
from speechvault.errors import NotFoundError


# --------------------------------------------------------------------------- cipher-report
def cipher_report_cmd(
    audio: Annotated[Optional[Path], typer.Argument(
        metavar="[AUDIO]", help="A recording (default: the shipped clip sentence_en-us_1.wav).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Also write the Markdown table to this file.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Reproducible master key and nonces (still one fresh nonce per blob).",
        show_default=False)] = None,
) -> None:
    """Security figures of the paper's literal cipher and the vault default on real speech:
    key sensitivity, entropy, chi-square, correlation, NPCR/UACI, NIST tests, nonce independence."""
    from speechvault.cipher_report import cipher_report

    command = "speechvault " + " ".join(__import__("shlex").quote(a) for a in sys.argv[1:])
    report = cipher_report(audio, seed=seed, command=command)
    if output is not None:
        output.write_text(report.to_markdown(), encoding="utf-8")
    if as_json:
        kit.print_json(report.to_dict())
    else:
        kit.stdout().print(report.to_markdown(), markup=False, highlight=False)
    if not report.passed("mixed"):
        raise typer.Exit(2)


# --------------------------------------------------------------------------- eval / bench
def eval_cmd(
    data_dir: Annotated[Optional[Path], typer.Argument(
        metavar="[DATA_DIR]", help="Folder per category (default: $SPEECHVAULT_FSDD, else "
        "../shared/data/fsdd next to a checkout; --quick falls back to the bundled examples); "
        "'examples' forces the examples.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", show_default=False, help="Where eval.md, "
                                      "eval.json and the PNG figures go (required).")] = ...,
    quick: Annotated[bool, typer.Option("--quick", help="CI size: 1 epoch on a subset, K in "
                                        "{64, 384}.")] = False,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per model that has to be "
                                                  "trained (cached models are reused).", show_default=False)] = None,
    max_train_per_class: Annotated[Optional[int], typer.Option(min=1, show_default=False,
                                                               help="Training clips per class.")] = None,
    n_aug: Annotated[Optional[int], typer.Option(min=0, show_default=False,
                                                 help="CPO copies per training clip.")] = None,
    ks: Annotated[Optional[str], typer.Option(help="Hash lengths, comma-separated.",
                                              show_default=False)] = None,
    max_queries: Annotated[Optional[int], typer.Option(min=1, show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Model cache (default "
                                                      "$SPEECHVAULT_MODEL_CACHE).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reproduce the paper's experiments (Tables 1-3, 5, Fig. 8-10, FAR/FRR) into OUT (needs:
    pip install 'speechvault\\[train]')."""
    from speechvault.extras import require

    require("eval", "train")  # TensorFlow trains the models, matplotlib draws the figures
    from model_export.report import find_fsdd, run_eval

    if data_dir is None and not quick and find_fsdd() is None:
        raise NotFoundError(
            "no data to evaluate on: give DATA_DIR (one folder per category, e.g. FSDD sorted by "
            "digit) or set $SPEECHVAULT_FSDD; the default ../shared/data/fsdd exists only next to "
            "a checkout ('examples' runs on the 30 bundled clips, --quick falls back to them)")

    command = kit.cmdline("eval", data_dir, [
        ("--quick", quick), ("--epochs", epochs), ("--max-train-per-class", max_train_per_class),
        ("--n-aug", n_aug), ("--ks", ks), ("--max-queries", max_queries), ("--cache-dir", cache_dir),
        ("--out", out)])
    err = kit.stderr()
    rep = run_eval(data_dir, out, quick, epochs=epochs, max_train_per_class=max_train_per_class,
                   n_aug=n_aug, ks=[int(k) for k in ks.split(",")] if ks else None,
                   max_queries=max_queries, cache_dir=cache_dir, command=command,
                   log=lambda s: err.print(s, markup=False, highlight=False))
    if as_json:
        kit.print_json(rep.to_dict())
    else:
        kit.stdout().print(f"wrote {rep.md_path}, {rep.json_path} and {len(rep.figures)} figures")


def bench_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", show_default=False,
                                      help="Where bench.md and bench.json go (required).")],
    quick: Annotated[bool, typer.Option("--quick", help="CI size (1k and 10k rows).")] = False,
    sizes: Annotated[Optional[str], typer.Option(help="Vault sizes, comma-separated (the first "
                                                 "holds real codes).", show_default=False)] = None,
    queries: Annotated[Optional[int], typer.Option(min=1, show_default=False,
                                                   help="Queries per row.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data", show_default=False,
                                                     help="Audio for the real codes (default: FSDD, "
                                                          "else the bundled examples).")] = None,
    busy: Annotated[bool, typer.Option("--busy", help="Measure the target figures again with one "
                                       "core taken by a spinning process.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search speed (paper Table 4) vs FAISS, ingest and cipher throughput, latency, memory."""
    from speechvault.extras import note_if_missing

    note = note_if_missing("bench", "the FAISS columns stay empty")
    if note:
        sys.stderr.write(note + "\n")
    from model_export.bench import run_bench

    command = kit.cmdline("bench", None, [("--quick", quick), ("--busy", busy), ("--sizes", sizes),
                                       ("--queries", queries), ("--data", data_dir), ("--out", out)])
    err = kit.stderr()
    rep = run_bench(out, quick, sizes=[int(s) for s in sizes.split(",")] if sizes else None,
                    n_queries=queries, data_dir=data_dir, command=command, busy=busy,
                    log=lambda s: err.print(s, markup=False, highlight=False))
    if as_json:
        kit.print_json(rep.to_dict())
    else:
        kit.stdout().print(rep.table(), markup=False, highlight=False)
        kit.stdout().print(f"wrote {rep.md_path} and {rep.json_path}")


def eval_loso_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where loso.md and loso.json go.")]
    = Path("docs/results"),
    data_dir: Annotated[Optional[Path], typer.Option("--data", show_default=False,
                                                     help="FSDD folder (default: $SPEECHVAULT_FSDD "
                                                          "or ../shared/data/fsdd).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per model (same for every recipe).")] = 6,
    speakers: Annotated[Optional[str], typer.Option(help="Held-out speakers, comma-separated "
                                                    "(default: all six).", show_default=False)] = None,
    recipes: Annotated[str, typer.Option(help="baseline, diverse or both.")] = "baseline,diverse",
) -> None:
    """Leave-one-speaker-out: h1 accuracy, mAP of h2, recall/precision at tau and auto's
    traversal share per held-out FSDD speaker and on unseen espeak-ng voices, for the shipped
    default and the training recipes (needs: pip install 'speechvault\\[train]')."""
    from speechvault.extras import require

    require("eval-loso", "train")
    from model_export.loso import default_model_path, run_loso
    from model_export.report import find_fsdd

    data = data_dir or find_fsdd()
    if data is None:
        raise NotFoundError("no FSDD folder: give --data or set $SPEECHVAULT_FSDD")
    command = kit.cmdline("eval-loso", None, [("--data", data_dir), ("--epochs", epochs),
                                            ("--speakers", speakers), ("--recipes", recipes), ("--out", out)])
    err = kit.stderr()
    run_loso(data, out, epochs=epochs, recipes=recipes.split(","),
             speakers=speakers.split(",") if speakers else None, default_model=default_model_path(),
             command=command, log=lambda s: err.print(s, markup=False, highlight=False))
    kit.stdout().print(f"wrote {out / 'loso.md'} and {out / 'loso.json'}")


def eval_identify_cmd(
    # required, as for eval and bench: a default of docs/results wrote into whatever folder
    # the command ran in
    out: Annotated[Path, typer.Option("--out", "-o", show_default=False,
                                      help="Where excerpts.md and excerpts.json go (required).")],
    data_dir: Annotated[Optional[Path], typer.Option("--data", show_default=False,
                                                     help="FSDD folder for the held-out speaker's joins "
                                                          "(default: ../shared/data/fsdd if present).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="CI size: a few espeak-ng recordings, "
                                        "4 conditions, no FSDD.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the recordings, offsets and noise.")] = 0,
    model: Annotated[Optional[str], typer.Option(help="A shipped model's name or a .tflite file "
                                                 "(default: the default model).", show_default=False)] = None,
    excerpts: Annotated[int, typer.Option("--excerpts", min=1, max=20,
                                          help="Excerpts per stored recording and length, each at "
                                               "its own random offset (more: a finer recall figure).")] = 1,
) -> None:
    """Find a recording from 3 s / 5 s excerpts under real-copy degradations, on held-out voices:
    speechvault vs Chromaprint (fpcalc) on the same queries."""
    from model_export.excerpt_eval import run_excerpt_eval
    from model_export.long_speech import espeak_available

    if quick and not espeak_available():
        kit.stdout().print("skipped: espeak-ng is not installed (the quick run synthesises its speech)")
        return
    command = kit.cmdline("eval-identify", None, [("--quick", quick), ("--data", data_dir),
                                                ("--seed", seed or None), ("--model", model),
                                                ("--excerpts", excerpts if excerpts > 1 else None),
                                                ("--out", out)])
    rep = run_excerpt_eval(out, quick=quick, data_dir=data_dir, seed=seed, command=command,
                           encoder=kit.model_encoder(model) if model else None,
                           excerpts_per_recording=excerpts)
    kit.stdout().print(f"wrote {out / 'excerpts.md'} and {out / 'excerpts.json'} ({rep['seconds']:.0f} s)")


#: (name, function) in ``--help`` order
COMMANDS = (("cipher-report", cipher_report_cmd), ("eval", eval_cmd), ("bench", bench_cmd),
            ("eval-loso", eval_loso_cmd), ("eval-identify", eval_identify_cmd))
