"""speechvault.cipher_report: the security figures of both extractions on real speech.

The paper's literal cipher must show its known weaknesses (no nonce: NPCR ~ 100/N; x0 + 1e-10
decrypts a long prefix; serial test fails); the vault default must reach the ideal values
within their tolerances. Seeds are fixed, so every figure is deterministic (no flakiness)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import gammaincc
from scipy.stats import chi2

from speechvault.errors import AudioDecodeError, InvalidInputError, NotFoundError
from speechvault import cipher_report as cr

EXAMPLES = Path(__file__).resolve().parents[1] / "speechvault" / "examples"
SHORT = EXAMPLES / "0_en_1.wav"


@pytest.fixture(scope="module")
def report() -> cr.CipherReport:
    return cr.cipher_report(cr.DEFAULT_CLIP, seed=0)


def test_vault_default_reaches_the_ideal_values(report):
    assert report.passed("mixed"), report.failures("mixed")
    m = report.results["mixed"]
    assert m["wrong_key_refused"] is True
    assert abs(m["npcr8"] - 99.6094) < 0.05 and abs(m["uaci8"] - 33.4635) < 0.2
    assert m["npcr16"] > 99.99 and abs(m["uaci16"] - 33.3338) < 0.3
    assert 7.998 < m["entropy"] <= 8.0
    assert abs(m["corr_cipher"]) < 3 / math.sqrt(report.samples)
    assert report.results["mixed"]["corr_plain"] > 0.5  # speech is strongly correlated


def test_paper_literal_shows_its_weaknesses(report):
    p = report.results["paper"]
    n = report.file_bytes
    # no nonce: two recordings differing in one sample differ in <= 2 ciphertext bytes
    assert p["npcr8"] <= 100 * 2 / n + 1e-9 and p["npcr8"] > 0
    assert p["uaci8"] < 0.01
    # x0 + 1e-10: the first ~15 KB decrypt with the wrong key
    assert p["sens_first_diff"] > 10_000 and p["wrong_key_refused"] is False
    assert p["nist_serial_p"] < 1e-6
    assert p["nonce_equal_pct"] == 100.0
    assert not report.passed("paper")


def test_markdown_and_json(report):
    md = report.to_markdown()
    assert md.count("\n|") >= 20 and "NPCR" in md and "UACI" in md and "vault default" in md
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] == {"paper": False, "mixed": True}
    assert set(d["results"]) == {"paper", "mixed"}


def test_array_input_and_errors(speech_like):
    y = speech_like(seconds=0.5)
    r = cr.cipher_report(y, seed=1, extractions=("mixed",), keystream_bytes=4096)
    assert r.samples == y.size and r.source == "<array>"
    with pytest.raises(InvalidInputError):
        cr.cipher_report(y, extractions=("nope",))
    with pytest.raises(AudioDecodeError):
        cr.cipher_report(np.array([np.nan] * 100))
    with pytest.raises(NotFoundError):
        cr.cipher_report("/nonexistent.wav")


def test_rejection_rate_is_what_alpha_says():
    """Over 30 fresh keys/nonces, NPCR/UACI leave their 5 % regions about 5 % of the time."""
    t = cr.npcr_uaci_trials(SHORT, trials=30, seed=3)
    assert all(rate <= 0.2 for rate in t["rejection_rate"].values()), t
    assert abs(t["mean"]["uaci8"] - 33.4635) < 0.15


def test_statistics_helpers_against_scipy():
    for a, x in [(127.5, 130.0), (127.5, 200.0), (2.0, 0.1), (16384.0, 16100.0), (0.5, 30.0)]:
        assert cr._gammaincc(a, x) == pytest.approx(gammaincc(a, x), rel=1e-9, abs=1e-300)
    assert cr.chi2_sf(300.0, 255) == pytest.approx(chi2.sf(300.0, 255), rel=1e-9)
    # Wu et al.'s published values for 256x256 8-bit images (alpha = 0.05)
    assert cr.npcr_critical(256 * 256, 8) == pytest.approx(99.5693, abs=0.002)
    lo, hi = cr.uaci_interval(256 * 256, 8)
    assert lo == pytest.approx(33.2824, abs=0.001) and hi == pytest.approx(33.6447, abs=0.001)
    rng = np.random.default_rng(0)
    u = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    assert cr.nist_monobit(u) > 0.01 and cr.nist_runs(u) > 0.01 and cr.nist_serial(u, 8) > 0.01
    assert cr.nist_serial(np.repeat(u[:4096], 4), 8) < 1e-6  # repeated bytes: serial structure


def test_cli_command(tmp_path):
    import cli
    from typer.testing import CliRunner

    out = tmp_path / "report.md"
    r = CliRunner().invoke(cli.app, ["cipher-report", str(SHORT), "--json", "--seed", "5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["passed"]["mixed"] is True
    assert "NPCR" in out.read_text()


def test_holm_against_a_worked_example():
    """Holm (1979): p sorted ascending, adjusted = running max of (m - i) * p_(i), capped at 1."""
    adj, rej = cr.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}, alpha=0.05)
    assert adj == pytest.approx({"d": 0.02, "a": 0.03, "c": 0.06, "b": 0.06})
    assert rej == {"d": True, "a": True, "c": False, "b": False}
    assert cr.binomial_upper_tail(10, 0.5, 8) == pytest.approx(56 / 1024)
    assert cr.binomial_upper_tail(300_000, 1 / 256, 0) == 1.0


def test_an_ideal_cipher_passes_about_95_percent_of_seeds():
    """The vault default (indistinguishable from ideal) over 20 fixed seeds: without the
    correction the battery failed ~1 seed in 3 (issue 17: 10 of 30); with Holm at 0.05, about
    1 in 20. Seeds are fixed, so the counts are deterministic."""
    holm_pass = nominal_pass = 0
    for seed in range(20):
        r = cr.cipher_report(SHORT, seed=seed, extractions=("mixed",))
        holm_pass += r.passed("mixed")
        nominal_pass += not r.nominal_failures("mixed")
        assert set(r.p_values["mixed"]) >= {"npcr8", "uaci16", "nist_serial_p", "entropy"}
        assert all(0.0 <= p <= 1.0 for p in r.p_values["mixed"].values())
    assert holm_pass >= 18, holm_pass
    assert nominal_pass < holm_pass  # the uncorrected battery fails ideal seeds by chance


def test_the_paper_cipher_still_fails_with_the_correction(report):
    assert not report.passed("paper")
    assert {"nist_serial_p", "npcr8", "sens_first_diff"} <= set(report.failures("paper"))
