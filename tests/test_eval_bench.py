"""``speechvault eval --quick`` and ``speechvault bench --quick`` run end to end (issue 5).

These assert only that the reports are complete and well-formed (every table, every figure,
the machine and the command at the top), never a number's value: the numbers of the committed
docs/results/ come from the full runs, on a known machine.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from speechvault import paper

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_bench_quick_report_is_complete(tmp_path):
    """Runs in a fresh interpreter through the CLI, and checks TensorFlow was never imported."""
    out = tmp_path / "results"
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "import cli\n"
        f"r = CliRunner().invoke(cli.app, ['bench', '--quick', '--busy', '--sizes', '500,2000',"
        f" '--queries', '5', '--data', 'examples', '--out', {str(out)!r}])\n"
        "print(r.output)\n"
        "assert r.exit_code == 0, (r.exit_code, r.output, r.exception)\n"
        "assert 'tensorflow' not in sys.modules, 'bench imported tensorflow'\n"
    )
    env_cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**__import__("os").environ, "SPEECHVAULT_CACHE": str(env_cache)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    for key in ("command", "machine", "table4", "ingest", "cipher", "end_to_end", "memory", "faiss", "notes"):
        assert key in rep, key
    assert rep["command"].startswith("speechvault bench --quick")
    ex = rep["excerpt"]  # issue 12: 5 s excerpts against N recordings (needs espeak-ng)
    if "skipped" not in ex:
        assert ex["ingest_s_per_recording"] > 0 and ex["rows_per_hour"] > 0
        for q in ex["query"]:
            assert q["queries"] >= 1 and 0 <= q["matched"] <= q["queries"] and q["sql_p50_ms"] > 0
        # --busy: each strategy timed idle and with one core spinning (issue 13's rule)
        runs = {(q["candidates"], q.get("busy", False)) for q in ex["query"]}
        assert runs == {(c, b) for c, _ in runs for b in (False, True)}, runs
        assert "one core busy" in md
        assert "Excerpt search" in md
    assert rep["machine"]["cores"] >= 1 and rep["machine"]["cpu"]
    rows = rep["table4"]
    want = {(500, K, m) for K in paper.HASH_BITS_CHOICES for m in ("traversal", "two-stage")}
    want |= {(2000, 384, m) for m in ("traversal", "two-stage")}
    assert {(r["size"], r["K"], r["mode"]) for r in rows} == want
    for r in rows:
        assert _finite(r["p50"]) and r["p50"] > 0 and r["p95"] >= r["p50"]
        assert r["codes"] == ("real" if (r["size"], r["K"]) == (500, 384) else "synthetic")
        if r["size"] == 500:
            assert r["paper"] == pytest.approx(
                {64: (0.0591, 0.0465), 128: (0.0720, 0.0479), 256: (0.0880, 0.0502),
                 384: (0.1020, 0.0544), 512: (0.1201, 0.0590)}[r["K"]][r["mode"] == "two-stage"])
        if rep["faiss"]["available"]:
            assert _finite(r["faiss"]["p50"]) and _finite(r["vault_over_faiss"])
    assert rep["ingest"]["files"] > 0 and rep["ingest"]["files_per_s"] > 0 and rep["ingest"]["MB_per_s"] > 0
    assert rep["cipher"]["rossler_keystream_xor_MB_per_s"] > 0
    for k in ("clip", "10s_recording"):
        assert rep["end_to_end"][k]["p50"] > 0 and rep["end_to_end"][k]["inference_p50"] > 0
    assert rep["memory"]["peak_rss_mb"] > 0
    # issue 13: every target figure idle and busy; the spinner stopped after each busy pass
    from model_export.bench_targets import TARGETS
    from model_export.busy import spinner_alive

    tg = rep["targets"]
    want_keys = {t.key for t in TARGETS} - ({"faiss_large_p50", "two_stage_large_over_faiss",
                                             "traversal_large_over_faiss"}
                                            if not rep["faiss"]["available"] else set())
    for state in ("idle", "busy"):
        assert set(tg[state]) == want_keys, (state, sorted(tg[state]))
        assert all(_finite(v) and v > 0 for v in tg[state].values()), tg[state]
    assert tg["spinner"] and not any(spinner_alive(s["pid"]) for s in tg["spinner"])
    assert "## Targets of issue 13" in md and "| busy / idle |" in md
    for heading in ("Command: `speechvault bench --quick", "Machine:", "## Table 4", "| paper ms |",
                    "## Throughput", "## End-to-end query latency", "## Memory", "## FAISS"):
        assert heading in md, heading


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="eval trains its models: needs TensorFlow (pip install 'speechvault[train]')")
def test_eval_quick_report_is_complete(tmp_path):
    from typer.testing import CliRunner

    import cli

    out = tmp_path / "results"
    r = CliRunner().invoke(cli.app, ["eval", "examples", "--quick", "--out", str(out),
                                     "--cache-dir", str(tmp_path / "models")])
    assert r.exit_code == 0, (r.output, r.exception)
    rep = json.loads((out / "eval.json").read_text())
    md = (out / "eval.md").read_text()
    assert rep["command"].startswith("speechvault eval") and rep["quick"] is True
    assert rep["machine"]["cpu"] and rep["machine"]["cores"] >= 1 and rep["machine"]["load_avg_1_5_15"]
    assert rep["data"]["test_speaker"] != rep["data"]["validation_speaker"]
    assert rep["data"]["test_speaker"] not in rep["data"]["train_speakers"]
    # every model of the quick grid was trained (or loaded) and has its per-epoch curve
    for arch in ("cnn", "crnn"):
        for K in (64, 384):
            m = rep["models"][f"{arch}-k{K}"]
            assert m["source"] in ("trained", "cache"), m
            assert m["curves"] and "test_accuracy" in m["curves"][0] and "test_loss" in m["curves"][0]
            assert 0.0 <= m["eval"]["mAP"] <= 1.0
    # Table 1: a row per paper K, with the paper's numbers beside ours
    assert [t["K"] for t in rep["table1"]] == list(paper.HASH_BITS_CHOICES)
    for t in rep["table1"]:
        assert _finite(t["cnn_paper"]) and _finite(t["crnn_paper"])
        if t["run"]:
            assert _finite(t["cnn_mAP"]) and _finite(t["crnn_mAP"])
    assert {t["model"] for t in rep["table2"]} == {"cnn", "crnn"}
    for t in rep["table2"]:
        assert all(0.0 <= t[k] <= 1.0 for k in ("recall", "precision", "f1")) and t["paper"]["f1"] > 0.99
    cpos = {(t["model"], t["cpo"]) for t in rep["table3"]}
    assert cpos == {(a, c) for a in ("cnn", "crnn")
                    for c in ("-3dB", "+3dB", "MP3", "R.Q", "noise20dB", "noise10dB")}
    assert {t["model"].split(" ")[0] for t in rep["table5"]} >= {"default", "cnn-k384", "crnn-k384"}
    for t in rep["table5"]:
        assert t["wall_mean"] > 0 and t["inference"] > 0 and t["features"] > 0
        # a model with identification windows runs both stages in one statement (store.excerpt)
        assert t["hamming_stage"] > 0 and t["category_stage"] >= 0
    for k, c in rep["far_frr"].items():
        assert 0.0 < c["recommended"]["tau"] < 0.5 and c["n_impostor"] > 0 and c["n_genuine"] > 0
    assert rep["fig10"]["query"] and _finite(rep["fig10"]["true_ber"])
    for key in ("fig8", "fig9", "fig10", "far_frr"):
        png = out / rep["figures"][key]
        assert png.read_bytes()[:8] == PNG, key
        assert f"]({rep['figures'][key]})" in md
    for heading in ("Command: `speechvault eval", "Machine:", "## Table 1", "CNN (paper)", "## Table 2",
                    "## Table 3", "## Fig. 10", "## False accept / false reject", "## Table 5",
                    "paper ms", "## Fig. 8 / Fig. 9"):
        assert heading in md, heading
