"""Cipher report: the image-encryption style security figures of the paper's Rossler cipher,
measured on real speech for the paper's literal extraction and for the vault's sealed blobs.

``cipher_report(source) -> CipherReport`` (``to_dict()``, ``to_markdown()``) compares two ways
of encrypting the same recording (its file bytes, as the vault stores them):

``paper``  the paper's cipher literally (Sec. IV-B, ``store.rossler.rossler_xor``): one
           trajectory of eq. 8 from the key (x0, y0, z0), step 4's byte
           ``floor(frac(K)*256)`` of Kx, Ky, Kz XORed. No nonce, no tag.
``mixed``  the vault default (``store.envelope.seal``): a fresh 128-bit nonce per blob, HKDF
           per-blob keys from a 256-bit master key, 8192 lanes of eq. 8 with the "mixed"
           extraction, HMAC-SHA256 tag (encrypt-then-MAC).

Definitions (every figure is over the whole ciphertext of the file, header included, from its
first byte; N = number of bytes, or of 16-bit words):

* key sensitivity: the key changed minimally -- paper: x0 + 1e-10; vault: the master key with
  one bit flipped (same nonce). Share of ciphertext bytes that differ (ideal 1 - 1/256 =
  99.61 %), offset of the first differing byte, share of plaintext bytes that decryption with
  that key recovers, and whether the tag refuses it. A diagnostic row (not a key of the vault)
  adds 1e-10 to x0 of every lane's initial state with key and nonce unchanged: during the first
  ~10 steps such a tiny perturbation changes only the low significand bits the "mixed" window
  reads, so ~1 % of bytes too many stay equal. No attacker can produce nearby lane states: they
  come from HKDF-SHA256(master key, nonce), and the master-key row is the vault's real figure.
* byte entropy (bits, ideal 8; the plug-in estimate is biased low by ~255 / (2 N ln 2)) and the
  chi-square of the 256-bin byte histogram (255 dof, p-value).
* correlation of adjacent 16-bit samples (little-endian int16 at the PCM data offsets) of the
  plain and the encrypted file; ideal |r| < 3 / sqrt(N).
* NPCR / UACI between the encryptions of two recordings that differ in ONE sample (by one LSB),
  each encrypted as the system does it (paper: same key, so the same keystream; mixed: ``seal``,
  so each gets its own nonce). NPCR = 100 * mean(C1 != C2); UACI = 100 * mean(|C1 - C2|) / F,
  F = 255 for bytes, 65535 for 16-bit words (unsigned, little-endian, at even offsets). Ideal
  (independent uniform values, Wu, Noonan & Agaian 2011): NPCR = 100 (1 - 2^-b) = 99.6094 % /
  99.9985 %, UACI = 100 (F + 2) / (3 F + 3) = 33.4635 % / 33.3338 %. Pass: NPCR above Wu's
  critical value N*_0.05, UACI inside Wu's (U*-, U*+)_0.05 interval for N values.
  A keystream reused without a nonce gives NPCR = 100 * (changed bytes) / N -- about 100/N.
* NIST SP 800-22 frequency (monobit, sec. 2.1), runs (2.3) and serial (2.11, m = 16, the
  smaller of its two p-values) on 2^17 keystream bytes (2^20 bits); pass p >= 0.01.
  The ``mixed`` keystream is read as the ciphertext of an all-zero plaintext sealed by ``seal``.
* nonce independence: the keystreams of two nonces under one key (``mixed``: two ``seal`` calls;
  ``paper``: has no nonce, so "two encryptions" share their keystream): share of equal bytes
  (ideal 1/256), correlation of the byte sequences, chi-square p of their XOR.

Verdict (``passed``): a battery of 16 statistical checks, each at its own alpha, fails an ideal
cipher on about one seed in three by chance. So each statistical check also gets a p-value under
"ideal" (``_p_values``) and Holm's step-down correction decides at a family-wise alpha of 0.05
(``holm``); only the exact checks (key space >= 128 bits, the tag refuses a wrong key) are plain
pass/fail. The per-row ✓/✗ of the table stay each check at its own level, for reading.

Lives in ``speechvault/`` (it was ``store/cipher_report.py``): it is an experiment on the
cipher, not part of the vault's storage.

scipy is not a runtime dependency: the chi-square / incomplete gamma tail is computed here
(Numerical Recipes' series and continued fraction; a test compares it with scipy).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechvault.errors import AudioDecodeError, InvalidInputError

__all__ = [
    "CipherReport",
    "cipher_report",
    "DEFAULT_CLIP",
    "EXTRACTION_LABELS",
    "byte_entropy",
    "chi2_sf",
    "byte_chi2",
    "adjacent_correlation",
    "npcr_uaci",
    "npcr_critical",
    "uaci_interval",
    "nist_monobit",
    "nist_runs",
    "nist_serial",
    "npcr_uaci_trials",
]

#: the shipped example clip the report uses when no source is given (9.4 s of espeak-ng speech)
DEFAULT_CLIP = Path(__file__).resolve().parents[1] / "speechvault" / "examples" / "sentence_en-us_1.wav"
EXTRACTION_LABELS = {
    "paper": "paper, literal (rossler_xor: one trajectory, no nonce, no tag)",
    "mixed": "vault default (seal: nonce + mixed lanes + HMAC)",
}
KEYSTREAM_BYTES = 1 << 17
PAPER_KEY = (0.1, 0.2, 0.3)
DELTA_X0 = 1e-10
NIST_ALPHA = 0.01
NPCR_UACI_ALPHA = 0.05
SERIAL_M = 16
#: family-wise error rate of the whole battery (Holm): the chance an ideal cipher fails any test
FAMILY_ALPHA = 0.05
#: the checks that are properties, not statistics (no p-value; they must simply hold)
EXACT_CHECKS = ("key_space_bits", "wrong_key_refused")
_Z = {0.05: (1.6448536269514722, 1.959963984540054), 0.01: (2.3263478740408408, 2.5758293035489004),
      0.001: (3.090232306167813, 3.2905267314918945)}  # (one-sided, two-sided) normal quantiles


# ----------------------------------------------------------------------------- statistics
def _gammaincc(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (series for x < a + 1, else Lentz's CF)."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(100000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - lg) * h


def chi2_sf(stat: float, dof: int) -> float:
    """P(chi^2_dof >= stat)."""
    return _gammaincc(dof / 2.0, stat / 2.0)


def byte_entropy(data: np.ndarray) -> float:
    p = np.bincount(np.asarray(data, np.uint8), minlength=256) / max(1, len(data))
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def byte_chi2(data: np.ndarray) -> tuple[float, float]:
    """(chi^2 statistic, p-value) of the 256-bin byte histogram against the uniform one."""
    counts = np.bincount(np.asarray(data, np.uint8), minlength=256).astype(np.float64)
    expected = len(data) / 256.0
    stat = float(((counts - expected) ** 2 / expected).sum())
    return stat, chi2_sf(stat, 255)


def adjacent_correlation(x: np.ndarray) -> float:
    """Pearson r of (x[t], x[t+1])."""
    x = np.asarray(x, np.float64)
    if len(x) < 3:
        return float("nan")
    a, b = x[:-1], x[1:]
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def npcr_uaci(c1: np.ndarray, c2: np.ndarray, bits: int) -> tuple[float, float]:
    """(NPCR %, UACI %) of two equally long arrays of ``bits``-bit unsigned values."""
    f = float((1 << bits) - 1)
    a, b = np.asarray(c1, np.int64), np.asarray(c2, np.int64)
    return float(100.0 * np.mean(a != b)), float(100.0 * np.mean(np.abs(a - b)) / f)


def npcr_critical(n: int, bits: int, alpha: float = NPCR_UACI_ALPHA) -> float:
    """NPCR critical value N*_alpha (%) for n values of ``bits`` bits: NPCR passes when it is
    at least this. The number of equal pairs is Binomial(n, 2^-bits); this is its exact
    (1 - alpha) quantile (Wu et al. 2011 use the normal approximation, which is too strict for
    16-bit values and n << 2^16, where one equal word already fails it)."""
    p = 1.0 / (1 << bits)
    log_q = math.log1p(-p)
    # smallest k with P(X > k) <= alpha
    log_pmf = n * log_q  # P(X = 0)
    cdf, k = math.exp(log_pmf), 0
    while 1.0 - cdf > alpha and k < n:
        log_pmf += math.log((n - k) / (k + 1)) + math.log(p) - log_q
        k += 1
        cdf += math.exp(log_pmf)
    return 100.0 * (n - k) / n


def uaci_interval(n: int, bits: int, alpha: float = NPCR_UACI_ALPHA) -> tuple[float, float]:
    """Wu et al. (2011) UACI acceptance interval (U*-, U*+) in % for n values of ``bits`` bits."""
    f = float((1 << bits) - 1)
    mu = (f + 2.0) / (3.0 * f + 3.0)
    var = (f + 2.0) * (f * f + 2.0 * f + 3.0) / (18.0 * (f + 1.0) ** 2 * n * f)
    z = _Z[alpha][1]
    return 100.0 * (mu - z * math.sqrt(var)), 100.0 * (mu + z * math.sqrt(var))


def binomial_upper_tail(n: int, p: float, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (summed in log space from the mode outwards)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_pmf(i: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * log_p + (n - i) * log_q)

    total, i = 0.0, k
    while i <= n:
        term = math.exp(log_pmf(i))
        total += term
        if term < total * 1e-17 and i > n * p:
            break
        i += 1
    return min(1.0, total)


def _two_sided_z(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def holm(p_values: dict[str, float], alpha: float = FAMILY_ALPHA) -> tuple[dict[str, float],
                                                                           dict[str, bool]]:
    """Holm's step-down correction: (adjusted p-values, rejected) for a family of tests. It keeps
    the chance that an ideal cipher fails ANY test of the battery at most ``alpha``, whatever
    the tests' dependence -- one fixed alpha per test failed ~1 seed in 3 (issue 17)."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[k]))
        adjusted[k] = running
    return adjusted, {k: adjusted[k] <= alpha for k in order}


def nist_monobit(data: np.ndarray) -> float:
    bits = np.unpackbits(np.asarray(data, np.uint8)).astype(np.int64)
    return math.erfc(abs(int((2 * bits - 1).sum())) / math.sqrt(bits.size) / math.sqrt(2))


def nist_runs(data: np.ndarray) -> float:
    bits = np.unpackbits(np.asarray(data, np.uint8))
    n, pi = bits.size, float(bits.mean())
    if abs(pi - 0.5) >= 2 / math.sqrt(n):
        return 0.0  # the frequency prerequisite fails
    runs = 1 + int((bits[1:] != bits[:-1]).sum())
    return math.erfc(abs(runs - 2 * n * pi * (1 - pi)) / (2 * math.sqrt(2 * n) * pi * (1 - pi)))


def _psi2(bits: np.ndarray, m: int) -> float:
    if m <= 0:
        return 0.0
    n = bits.size
    wrapped = np.concatenate([bits, bits[: m - 1]]).astype(np.int64)
    patterns = np.zeros(n, dtype=np.int64)
    for j in range(m):
        patterns = (patterns << 1) | wrapped[j : j + n]
    counts = np.bincount(patterns, minlength=1 << m).astype(np.float64)
    return (1 << m) / n * float((counts * counts).sum()) - n


def nist_serial(data: np.ndarray, m: int = SERIAL_M) -> float:
    """The smaller of the serial test's two p-values (overlapping m-bit patterns)."""
    bits = np.unpackbits(np.asarray(data, np.uint8))
    p0, p1, p2 = _psi2(bits, m), _psi2(bits, m - 1), _psi2(bits, m - 2)
    return min(_gammaincc(2.0 ** (m - 2), (p0 - p1) / 2.0),
               _gammaincc(2.0 ** (m - 3), (p0 - 2 * p1 + p2) / 2.0))


# ----------------------------------------------------------------------------- the plaintext
@dataclass
class _Plain:
    name: str
    data: bytes          # the file bytes (canonical PCM_16 WAV)
    data_offset: int     # where the int16 samples start
    samples: np.ndarray  # int16, interleaved
    sample_rate: int
    channels: int


def _wav_bytes(samples: np.ndarray, sample_rate: int, channels: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples.reshape(-1, channels), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _load_plain(source: Any, sample_rate: int) -> _Plain:
    """The recording as a 16-bit PCM WAV file (a 16-bit WAV is used byte for byte)."""
    import soundfile as sf

    if isinstance(source, np.ndarray):
        y = np.asarray(source)
        if y.ndim != 1 or y.size < 16:
            raise InvalidInputError("cipher_report needs a 1-D array of at least 16 samples")
        if y.dtype != np.int16:
            yf = np.asarray(y, np.float64)
            if not np.isfinite(yf).all():
                raise AudioDecodeError("the samples contain NaN or infinite values")
            y = np.round(np.clip(yf, -1.0, 1.0) * 32767.0).astype(np.int16)
        data = _wav_bytes(y, sample_rate, 1)
        return _Plain("<array>", data, len(data) - 2 * y.size, y, int(sample_rate), 1)
    path = Path(source)
    from hashing.audio import read_info

    info = read_info(path)  # AudioDecodeError / NotFoundError for bad input
    raw = path.read_bytes()
    with sf.SoundFile(str(path)) as snd:
        y = snd.read(dtype="int16", always_2d=True)
    flat = np.ascontiguousarray(y).reshape(-1)
    if info.format == "WAV" and info.subtype == "PCM_16" and flat.size * 2 < len(raw):
        off = raw.find(b"data")
        off = off + 8 if off >= 0 else len(raw) - 2 * flat.size
        if np.array_equal(np.frombuffer(raw[off : off + 2 * flat.size], "<i2"), flat):
            return _Plain(path.name, raw, off, flat, info.sample_rate, info.channels)
    data = _wav_bytes(flat, info.sample_rate, info.channels)
    return _Plain(path.name + " (as PCM_16 WAV)", data, len(data) - 2 * flat.size, flat,
                  info.sample_rate, info.channels)


def _one_sample_changed(plain: _Plain) -> bytes:
    """The same file with its middle sample changed by one LSB."""
    i = plain.samples.size // 2
    off = plain.data_offset + 2 * i
    v = int(plain.samples[i])
    v = v + 1 if v < 32767 else v - 1
    return plain.data[:off] + int(v).to_bytes(2, "little", signed=True) + plain.data[off + 2 :]


# ----------------------------------------------------------------------------- the two ciphers
class _Rng:
    """Nonces and keys: from the OS CSPRNG, or reproducible from ``seed`` (reports in docs)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.counter = 0

    def bytes(self, n: int) -> bytes:
        if self.seed is None:
            return secrets.token_bytes(n)
        self.counter += 1
        return hashlib.shake_256(b"cipher-report|%d|%d" % (self.seed, self.counter)).digest(n)


def _sealed_body(plaintext: bytes, key: bytes, rng: _Rng, nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """(blob, ciphertext body) of ``seal`` with the vault default (mixed) and a fresh nonce."""
    from store import envelope as ev

    blob = ev._seal_with_nonce(plaintext, key, nonce or rng.bytes(ev.NONCE_SIZE), "rossler",
                               "mixed", b"")
    return blob, blob[ev.HEADER_SIZE : ev.HEADER_SIZE + len(plaintext)]


def _lane_keystream_perturbed(key: bytes, nonce: bytes, n: int, dx0: float) -> np.ndarray:
    """The keystream of ``seal``'s Rossler stream for (key, nonce) with x0 of every lane + dx0."""
    from store import envelope as ev
    from store import rossler as rs

    header = ev.parse_header(ev._pack_header("rossler", "mixed", nonce, n))
    enc_key = ev.hkdf_expand(ev._blob_prk(key, nonce), ev._ENC_LABEL, 32)
    lanes = 1 << header.log2_lanes
    label = rs._parameter_label(header.extraction, header.step, lanes, header.transient)
    state = rs.lane_initial_states(enc_key, nonce, lanes, label)
    state[0] += dx0
    integ = rs._LaneIntegrator(lanes, header.step)
    for _ in range(header.transient):
        integ.step(state, state)
    out, have = [], 0
    while have < n:
        integ.step(state, state)
        chunk = rs._extract_mixed(state[None].copy())
        out.append(chunk)
        have += chunk.size
    return np.concatenate(out)[:n]


def _u8(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8)


def _u16(b: bytes) -> np.ndarray:
    return np.frombuffer(b[: len(b) // 2 * 2], dtype="<u2")


def _first_diff(a: np.ndarray, b: np.ndarray) -> int | None:
    idx = np.flatnonzero(a != b)
    return int(idx[0]) if idx.size else None


def _measure_common(plain: _Plain, c: bytes, c_changed: bytes, keystream: np.ndarray) -> dict[str, Any]:
    cu8 = _u8(c)
    ent = byte_entropy(cu8)
    chi, chi_p = byte_chi2(cu8)
    n_samp = plain.samples.size
    enc_samples = np.frombuffer(c[plain.data_offset : plain.data_offset + 2 * n_samp], "<i2")
    npcr8, uaci8 = npcr_uaci(cu8, _u8(c_changed), 8)
    npcr16, uaci16 = npcr_uaci(_u16(c), _u16(c_changed), 16)
    return {
        "entropy": ent,
        "chi2": chi,
        "chi2_p": chi_p,
        "corr_plain": adjacent_correlation(plain.samples[:: plain.channels]),
        "corr_cipher": adjacent_correlation(enc_samples[:: plain.channels]),
        "npcr8": npcr8, "uaci8": uaci8, "npcr16": npcr16, "uaci16": uaci16,
        "nist_monobit_p": nist_monobit(keystream),
        "nist_runs_p": nist_runs(keystream),
        "nist_serial_p": nist_serial(keystream, SERIAL_M),
    }


def _measure_paper(plain: _Plain, key: tuple[float, float, float], ks_bytes: int) -> dict[str, Any]:
    from store.rossler import rossler_keystream

    n = len(plain.data)
    ks = rossler_keystream(key, max(n, ks_bytes), extraction="paper")
    x = _u8(plain.data)
    c = (x ^ ks[:n]).tobytes()
    c_changed = (_u8(_one_sample_changed(plain)) ^ ks[:n]).tobytes()  # same key: same keystream
    key2 = (key[0] + DELTA_X0, key[1], key[2])
    ks2 = rossler_keystream(key2, n, extraction="paper")
    c2 = x ^ ks2
    first = _first_diff(_u8(c), c2)
    decrypted = _u8(c) ^ ks2  # decryption with the near key: what leaks
    out = _measure_common(plain, c, c_changed, ks[:ks_bytes])
    out.update({
        "key_space": "(x0, y0, z0) in float64^3: about 2^108 keys at the 1e-10 resolution "
                     "over [-8, 8) x [-8, 8) x [0, 1)",
        "key_space_bits": round(math.log2((16e10) ** 2 * 1e10), 1),
        "sens_diff_pct": float(100.0 * np.mean(_u8(c) != c2)),
        "sens_first_diff": first,
        "wrong_key_recovered_pct": float(100.0 * np.mean(decrypted == x)),
        "wrong_key_refused": False,
        "state_x0_diff_pct": None,
        "state_x0_first_diff": None,
        "nonce_equal_pct": 100.0,  # no nonce: every encryption under the key reuses the keystream
        "nonce_corr": 1.0,
        "nonce_xor_chi2_p": 0.0,
    })
    return out


def _measure_mixed(plain: _Plain, rng: _Rng, ks_bytes: int) -> dict[str, Any]:
    from speechvault.errors import IntegrityError
    from store import envelope as ev

    key = rng.bytes(32)
    n = len(plain.data)
    blob, c = _sealed_body(plain.data, key, rng)
    _, c_changed = _sealed_body(_one_sample_changed(plain), key, rng)  # seal: its own nonce
    nonce = ev.parse_header(blob).nonce
    # x0 + 1e-10 in every lane, same key and nonce
    c_x0 = _u8(plain.data) ^ _lane_keystream_perturbed(key, nonce, n, DELTA_X0)
    # the real key: one bit flipped, same nonce
    key_flip = bytes([key[0] ^ 1]) + key[1:]
    _, c_flip = _sealed_body(plain.data, key_flip, rng, nonce=nonce)
    try:
        ev.open_sealed(blob, key_flip)
        refused = False
    except IntegrityError:
        refused = True
    wrong_plain = np.frombuffer(c, np.uint8) ^ np.frombuffer(c_flip, np.uint8) ^ _u8(plain.data)
    _, ks1 = _sealed_body(bytes(ks_bytes), key, rng)
    _, ks2 = _sealed_body(bytes(ks_bytes), key, rng)
    k1, k2 = _u8(ks1), _u8(ks2)
    out = _measure_common(plain, c, c_changed, k1)
    out.update({
        "key_space": "256-bit random master key (scrypt-wrapped); per-blob HKDF-SHA256 subkeys "
                     "from a fresh 128-bit nonce",
        "key_space_bits": 256.0,
        "sens_diff_pct": float(100.0 * np.mean(_u8(c) != _u8(c_flip))),
        "sens_first_diff": _first_diff(_u8(c), _u8(c_flip)),
        "wrong_key_recovered_pct": float(100.0 * np.mean(wrong_plain == _u8(plain.data))),
        "wrong_key_refused": refused,
        "state_x0_diff_pct": float(100.0 * np.mean(_u8(c) != c_x0)),
        "state_x0_first_diff": _first_diff(_u8(c), c_x0),
        "nonce_equal_pct": float(100.0 * np.mean(k1 == k2)),
        "nonce_corr": float(np.corrcoef(k1.astype(np.float64), k2.astype(np.float64))[0, 1]),
        "nonce_xor_chi2_p": byte_chi2(k1 ^ k2)[1],
    })
    return out


# ----------------------------------------------------------------------------- the report
_ROWS = [  # key, label, ideal (text)
    ("key_space_bits", "key space (bits)", "≥ 128"),
    ("sens_diff_pct", "key sensitivity: key changed minimally (paper: x0 + 1e-10; vault: "
     "master key with 1 bit flipped), ciphertext bytes that differ (%)", "99.61"),
    ("sens_first_diff", "  first differing byte", "0"),
    ("wrong_key_recovered_pct", "  decryption with that key: plaintext bytes recovered (%)", "0.39 (chance)"),
    ("wrong_key_refused", "  decryption with that key refused by the tag", "yes"),
    ("state_x0_diff_pct", "diagnostic, not a key: x0 of every lane + 1e-10 (same key, nonce), "
     "bytes that differ (%)", "99.61"),
    ("state_x0_first_diff", "  first differing byte", "0"),
    ("entropy", "ciphertext byte entropy (bits)", "8"),
    ("chi2", "ciphertext byte chi², 255 dof", "≈ 255"),
    ("chi2_p", "  its p-value", "≥ 0.01"),
    ("corr_plain", "adjacent 16-bit samples r, plain", "(speech: ≈ 1)"),
    ("corr_cipher", "adjacent 16-bit samples r, encrypted", "|r| < 3/√N"),
    ("npcr8", "NPCR, bytes (%)", "99.6094"),
    ("uaci8", "UACI, bytes (%)", "33.4635"),
    ("npcr16", "NPCR, 16-bit words (%)", "99.9985"),
    ("uaci16", "UACI, 16-bit words (%)", "33.3338"),
    ("nist_monobit_p", "NIST frequency (monobit) p, keystream", "≥ 0.01"),
    ("nist_runs_p", "NIST runs p, keystream", "≥ 0.01"),
    ("nist_serial_p", f"NIST serial m={SERIAL_M} p (min of 2), keystream", "≥ 0.01"),
    ("nonce_equal_pct", "two nonces, one key: equal keystream bytes (%)", "0.39"),
    ("nonce_corr", "two nonces, one key: keystream correlation r", "|r| < 3/√N"),
    ("nonce_xor_chi2_p", "two nonces, one key: chi² p of k1 xor k2", "≥ 0.01"),
]


@dataclass
class CipherReport:
    """The figures of both extractions (``results[name][row]``) and their pass/fail checks."""

    source: str
    file_bytes: int
    samples: int
    sample_rate: int
    channels: int
    keystream_bytes: int
    paper_key: tuple[float, float, float]
    seed: int | None
    results: dict[str, dict[str, Any]]
    checks: dict[str, dict[str, bool]]
    tolerances: dict[str, str]
    seconds: float
    command: str = ""
    extractions: tuple[str, ...] = ("paper", "mixed")
    labels: dict[str, str] = field(default_factory=lambda: dict(EXTRACTION_LABELS))
    #: per extraction, one p-value per statistical check (``_p_values``)
    p_values: dict[str, dict[str, float]] = field(default_factory=dict)

    def holm(self, extraction: str = "mixed") -> tuple[dict[str, float], dict[str, bool]]:
        """Holm-adjusted p-values and rejections of ``extraction``'s statistical checks."""
        return holm(self.p_values.get(extraction, {}), FAMILY_ALPHA)

    def passed(self, extraction: str = "mixed") -> bool:
        """The exact checks hold and Holm rejects none of the statistical ones (family-wise
        alpha ``FAMILY_ALPHA``). The per-row ✓/✗ are each test at its own level (nominal)."""
        return not self.failures(extraction)

    def failures(self, extraction: str = "mixed") -> list[str]:
        checks = self.checks[extraction]
        if not self.p_values.get(extraction):  # no p-values: every nominal check must hold
            return [k for k, ok in checks.items() if not ok]
        exact = [k for k in EXACT_CHECKS if not checks.get(k, True)]
        return exact + [k for k, rejected in self.holm(extraction)[1].items() if rejected]

    def nominal_failures(self, extraction: str = "mixed") -> list[str]:
        """Checks outside their own tolerance (each at its own alpha, no correction)."""
        return [k for k, ok in self.checks[extraction].items() if not ok]

    def to_dict(self) -> dict[str, Any]:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        return {
            "source": self.source, "file_bytes": self.file_bytes, "samples": self.samples,
            "sample_rate": self.sample_rate, "channels": self.channels,
            "keystream_bytes": self.keystream_bytes, "paper_key": list(self.paper_key),
            "seed": self.seed, "extractions": list(self.extractions), "labels": dict(self.labels),
            "results": {e: {k: clean(v) for k, v in r.items()} for e, r in self.results.items()},
            "checks": {e: dict(c) for e, c in self.checks.items()},
            "passed": {e: self.passed(e) for e in self.extractions},
            "family_alpha": FAMILY_ALPHA,
            "p_values": {e: dict(p) for e, p in self.p_values.items()},
            "holm_adjusted_p": {e: self.holm(e)[0] for e in self.p_values},
            "failures": {e: self.failures(e) for e in self.extractions},
            "nominal_failures": {e: self.nominal_failures(e) for e in self.extractions},
            "tolerances": dict(self.tolerances), "seconds": self.seconds, "command": self.command,
        }

    def to_markdown(self) -> str:
        def fmt(key: str, v: Any) -> str:
            if v is None:
                return "n/a"
            if isinstance(v, bool):
                return "yes" if v else "**no**"
            if isinstance(v, str):
                return v
            if key in ("sens_first_diff", "state_x0_first_diff", "chi2"):
                return f"{v:.0f}" if isinstance(v, float) else str(v)
            if key.endswith("_p"):
                return f"{v:.3g}" if v >= 1e-3 else (f"{v:.1e}" if v > 0 else "0")
            if key in ("npcr8", "uaci8", "npcr16", "uaci16", "sens_diff_pct", "state_x0_diff_pct",
                       "wrong_key_recovered_pct", "nonce_equal_pct"):
                return f"{v:.4f}"
            if key == "entropy":
                return f"{v:.5f}"
            if key in ("corr_plain", "corr_cipher", "nonce_corr"):
                return f"{v:+.5f}"
            return f"{v:g}"

        ex = self.extractions
        lines = [
            f"Cipher report: `{self.source}` ({self.file_bytes} bytes, {self.samples} samples, "
            f"{self.sample_rate} Hz, {self.channels} ch); keystream tests on {self.keystream_bytes} "
            f"bytes; paper key {self.paper_key}; seed {self.seed}.",
            "",
            "| measure | ideal | " + " | ".join(self.labels[e] for e in ex) + " |",
            "|---|---|" + "---|" * len(ex),
        ]
        for key, label, ideal in _ROWS:
            cells = []
            for e in ex:
                v = self.results[e].get(key)
                cell = fmt(key, v)
                ok = self.checks[e].get(key)
                if ok is not None and v is not None:
                    cell += " ✓" if ok else " ✗"
                cells.append(cell)
            lines.append(f"| {label} | {ideal} | " + " | ".join(cells) + " |")
        lines += ["", "Tolerances (✓/✗, each check at its own level, uncorrected):", ""]
        lines += [f"* {k}: {v}" for k, v in self.tolerances.items()]
        if self.p_values:
            lines += ["", f"Verdict: the exact checks ({', '.join(EXACT_CHECKS)}) must hold and Holm's "
                      f"correction over the {len(next(iter(self.p_values.values())))} statistical "
                      f"checks must reject none at family-wise alpha {FAMILY_ALPHA} (an ideal cipher "
                      "then fails about 1 run in 20, not 1 in 3). Holm-adjusted p-values:", ""]
            lines += ["| check | " + " | ".join(self.labels[e] for e in ex) + " |",
                      "|---|" + "---|" * len(ex)]
            adj = {e: self.holm(e)[0] for e in ex}
            for k in next(iter(self.p_values.values())):
                lines.append(f"| {k} | " + " | ".join(fmt('_p', adj[e].get(k)) for e in ex) + " |")
        lines += ["", "Result: " + "; ".join(
            f"{e}: {'all checks pass' if self.passed(e) else 'fails ' + ', '.join(self.failures(e))}"
            for e in ex)]
        if self.command:
            lines += ["", f"Command: `{self.command}` ({self.seconds:.1f} s)"]
        return "\n".join(lines) + "\n"


def _checks(r: dict[str, Any], n_bytes: int, n_samples: int, ks_bytes: int) -> tuple[dict[str, bool], dict[str, str]]:
    n_words = n_bytes // 2
    p8 = 1 - 1 / 256
    sens_tol = 300 * math.sqrt(p8 * (1 - p8) / n_bytes)  # 3 sigma, in %
    ent_min = 8 - 3 * 255 / (2 * n_bytes * math.log(2))
    corr_max = 3 / math.sqrt(max(1, n_samples - 1))
    nonce_corr_max = 3 / math.sqrt(ks_bytes)
    eq_tol = 300 * math.sqrt((1 / 256) * p8 / ks_bytes)
    u8lo, u8hi = uaci_interval(n_bytes, 8)
    u16lo, u16hi = uaci_interval(n_words, 16)
    n8, n16 = npcr_critical(n_bytes, 8), npcr_critical(n_words, 16)
    tol = {
        "key_space_bits": ">= 128 bits",
        "sens_diff_pct": f"within 3 sigma of 99.6094 % (±{sens_tol:.3f} for N = {n_bytes})",
        "sens_first_diff": "within the first 5 bytes (each byte is equal by chance with p = 1/256)",
        "wrong_key_recovered_pct": f"within 3 sigma of 0.3906 % (±{sens_tol:.3f})",
        "wrong_key_refused": "open_sealed raises IntegrityError",
        "entropy": f"> {ent_min:.5f} (8 minus 3x the plug-in bias 255/(2N ln 2))",
        "chi2_p, nist_*_p, nonce_xor_chi2_p": f">= {NIST_ALPHA}",
        "corr_cipher": f"|r| < 3/sqrt(N) = {corr_max:.5f}",
        "npcr8 / npcr16": f">= the critical value N*_0.05 (exact binomial quantile): {n8:.4f} % / {n16:.4f} %",
        "uaci8 / uaci16": f"inside Wu et al.'s (U*-, U*+)_0.05: ({u8lo:.4f}, {u8hi:.4f}) % / "
                          f"({u16lo:.4f}, {u16hi:.4f}) %",
        "nonce_equal_pct": f"within 3 sigma of 0.3906 % (±{eq_tol:.3f} for {ks_bytes} bytes)",
        "nonce_corr": f"|r| < 3/sqrt({ks_bytes}) = {nonce_corr_max:.5f}",
    }

    def near(v, target, t):
        return v is not None and abs(v - target) <= t

    c = {
        "key_space_bits": r["key_space_bits"] >= 128,
        "sens_diff_pct": near(r["sens_diff_pct"], 100 * p8, sens_tol),
        "sens_first_diff": r["sens_first_diff"] is not None and r["sens_first_diff"] <= 4,
        "wrong_key_recovered_pct": near(r["wrong_key_recovered_pct"], 100 / 256, sens_tol),
        "wrong_key_refused": bool(r["wrong_key_refused"]),
        "entropy": r["entropy"] > ent_min,
        "chi2_p": r["chi2_p"] >= NIST_ALPHA,
        "corr_cipher": abs(r["corr_cipher"]) < corr_max,
        "npcr8": r["npcr8"] >= n8,
        "uaci8": u8lo < r["uaci8"] < u8hi,
        "npcr16": r["npcr16"] >= n16,
        "uaci16": u16lo < r["uaci16"] < u16hi,
        "nist_monobit_p": r["nist_monobit_p"] >= NIST_ALPHA,
        "nist_runs_p": r["nist_runs_p"] >= NIST_ALPHA,
        "nist_serial_p": r["nist_serial_p"] >= NIST_ALPHA,
        "nonce_equal_pct": near(r["nonce_equal_pct"], 100 / 256, eq_tol),
        "nonce_corr": abs(r["nonce_corr"]) < nonce_corr_max,
        "nonce_xor_chi2_p": r["nonce_xor_chi2_p"] >= NIST_ALPHA,
    }
    return c, tol


def _p_values(r: dict[str, Any], n_bytes: int, n_samples: int, ks_bytes: int) -> dict[str, float]:
    """One p-value per statistical check, under "the cipher is ideal" (independent uniform bytes):
    binomial counts by their normal z (two-sided) or exact tail, correlations by r*sqrt(N),
    UACI by Wu et al.'s normal model, entropy by its G statistic (2N ln2 (8 - H) ~ chi2_255),
    the first differing byte by 256^-k; the chi2 and NIST p-values as measured."""
    n_words = n_bytes // 2
    q = 1 / 256

    def count_z(pct: float | None, n: int, prob: float) -> float:
        if pct is None or not math.isfinite(pct):
            return 0.0
        return _two_sided_z((pct / 100 - prob) / math.sqrt(prob * (1 - prob) / n))

    def npcr_p(pct: float, n: int, bits: int) -> float:  # too many equal values is the failure
        equal = int(round(n * (1 - pct / 100)))
        return binomial_upper_tail(n, 1.0 / (1 << bits), equal)

    def uaci_p(pct: float, n: int, bits: int) -> float:
        lo, hi = uaci_interval(n, bits)
        sd = (hi - lo) / (2 * _Z[NPCR_UACI_ALPHA][1])
        return _two_sided_z((pct - (lo + hi) / 2) / sd)

    def corr_p(rho: float, n: int) -> float:
        return 0.0 if not math.isfinite(rho) else _two_sided_z(rho * math.sqrt(max(1, n)))

    first = r.get("sens_first_diff")
    return {
        "sens_diff_pct": count_z(r["sens_diff_pct"], n_bytes, 1 - q),
        "sens_first_diff": 0.0 if first is None else min(1.0, q ** int(first)),
        "wrong_key_recovered_pct": count_z(r["wrong_key_recovered_pct"], n_bytes, q),
        "entropy": chi2_sf(max(0.0, 2 * n_bytes * math.log(2) * (8 - r["entropy"])), 255),
        "chi2_p": float(r["chi2_p"]),
        "corr_cipher": corr_p(r["corr_cipher"], n_samples - 1),
        "npcr8": npcr_p(r["npcr8"], n_bytes, 8),
        "uaci8": uaci_p(r["uaci8"], n_bytes, 8),
        "npcr16": npcr_p(r["npcr16"], n_words, 16),
        "uaci16": uaci_p(r["uaci16"], n_words, 16),
        "nist_monobit_p": float(r["nist_monobit_p"]),
        "nist_runs_p": float(r["nist_runs_p"]),
        # the serial test reports the smaller of its two p-values: P(min <= t) is up to 2t
        "nist_serial_p": min(1.0, 2.0 * float(r["nist_serial_p"])),
        "nonce_equal_pct": count_z(r["nonce_equal_pct"], ks_bytes, q),
        "nonce_corr": corr_p(r["nonce_corr"], ks_bytes),
        "nonce_xor_chi2_p": float(r["nonce_xor_chi2_p"]),
    }


def cipher_report(
    source: str | os.PathLike | np.ndarray | None = None,
    *,
    sample_rate: int = 16_000,
    extractions: tuple[str, ...] = ("paper", "mixed"),
    paper_key: tuple[float, float, float] = PAPER_KEY,
    keystream_bytes: int = KEYSTREAM_BYTES,
    seed: int | None = None,
    command: str = "",
) -> CipherReport:
    """Measure both extractions on ``source`` (an audio path or a 1-D array of samples at
    ``sample_rate``; default: the shipped clip ``DEFAULT_CLIP``). ``seed`` makes the master key
    and the nonces reproducible (distinct per blob as always); None uses the OS CSPRNG."""
    t0 = time.perf_counter()
    for e in extractions:
        if e not in EXTRACTION_LABELS:
            raise InvalidInputError(f"unknown extraction {e!r}; use 'paper' and/or 'mixed'")
    if not 1024 <= int(keystream_bytes) <= 1 << 24:
        raise InvalidInputError("keystream_bytes must be 1024 .. 2^24")
    plain = _load_plain(DEFAULT_CLIP if source is None else source, sample_rate)
    rng = _Rng(seed)
    results: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, bool]] = {}
    tolerances: dict[str, str] = {}
    p_values: dict[str, dict[str, float]] = {}
    for e in extractions:
        if e == "paper":
            results[e] = _measure_paper(plain, tuple(float(v) for v in paper_key), int(keystream_bytes))
        else:
            results[e] = _measure_mixed(plain, rng, int(keystream_bytes))
        checks[e], tolerances = _checks(results[e], len(plain.data), plain.samples.size,
                                        int(keystream_bytes))
        p_values[e] = _p_values(results[e], len(plain.data), plain.samples.size,
                                int(keystream_bytes))
    return CipherReport(
        source=plain.name, file_bytes=len(plain.data), samples=int(plain.samples.size),
        sample_rate=plain.sample_rate, channels=plain.channels,
        keystream_bytes=int(keystream_bytes), paper_key=tuple(float(v) for v in paper_key),
        seed=seed, results=results, checks=checks, tolerances=tolerances,
        seconds=time.perf_counter() - t0, command=command, extractions=tuple(extractions),
        p_values=p_values)


def npcr_uaci_trials(source: str | os.PathLike | np.ndarray | None = None, *, trials: int = 100,
                     sample_rate: int = 16_000, seed: int = 0) -> dict[str, Any]:
    """Repeat the vault default's NPCR/UACI measurement ``trials`` times (new key and nonces each)
    and count how often each figure falls outside its alpha = 0.05 acceptance region: for an
    ideal cipher that rate is about 5 % (at most 5 % for NPCR); far more means a real defect."""
    if not 1 <= int(trials) <= 100_000:
        raise InvalidInputError("trials must be 1 .. 100000")
    plain = _load_plain(DEFAULT_CLIP if source is None else source, sample_rate)
    changed = _one_sample_changed(plain)
    n8, n16 = len(plain.data), len(plain.data) // 2
    crit8, crit16 = npcr_critical(n8, 8), npcr_critical(n16, 16)
    (l8, h8), (l16, h16) = uaci_interval(n8, 8), uaci_interval(n16, 16)
    fails = {"npcr8": 0, "uaci8": 0, "npcr16": 0, "uaci16": 0}
    sums = dict.fromkeys(fails, 0.0)
    for t in range(int(trials)):
        rng = _Rng(seed * 1_000_003 + t)
        key = rng.bytes(32)
        _, c1 = _sealed_body(plain.data, key, rng)
        _, c2 = _sealed_body(changed, key, rng)
        a8, u8 = npcr_uaci(_u8(c1), _u8(c2), 8)
        a16, u16 = npcr_uaci(_u16(c1), _u16(c2), 16)
        for k, v in (("npcr8", a8), ("uaci8", u8), ("npcr16", a16), ("uaci16", u16)):
            sums[k] += v
        fails["npcr8"] += a8 < crit8
        fails["npcr16"] += a16 < crit16
        fails["uaci8"] += not l8 < u8 < h8
        fails["uaci16"] += not l16 < u16 < h16
    return {"source": plain.name, "trials": int(trials), "alpha": NPCR_UACI_ALPHA,
            "mean": {k: v / trials for k, v in sums.items()},
            "rejection_rate": {k: v / trials for k, v in fails.items()}}


def seed_pass_rate(source: str | os.PathLike | np.ndarray | None = None, *, seeds: int = 100,
                   sample_rate: int = 16_000) -> dict[str, Any]:
    """The vault default's verdict over seeds 0..seeds-1 (fresh master key and nonces each):
    how often it passes with Holm's correction and how often every check passes at its own
    level. For an ideal cipher the first is about 95 %; the second much lower."""
    if not 1 <= int(seeds) <= 10_000:
        raise InvalidInputError("seeds must be 1 .. 10000")
    holm_pass = nominal_pass = 0
    failed: dict[str, int] = {}
    t0 = time.perf_counter()
    for seed in range(int(seeds)):
        r = cipher_report(source, seed=seed, extractions=("mixed",), sample_rate=sample_rate)
        holm_pass += r.passed("mixed")
        nominal_pass += not r.nominal_failures("mixed")
        for k in r.failures("mixed"):
            failed[k] = failed.get(k, 0) + 1
    return {"seeds": int(seeds), "holm_pass": holm_pass, "nominal_pass": nominal_pass,
            "holm_failures_by_check": failed, "seconds": time.perf_counter() - t0}
