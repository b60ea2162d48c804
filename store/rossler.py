"""The Rossler chaotic stream cipher of Sec. III-D / IV-B / IV-F, paper-exact and vault-grade.

The paper (eq. 8) integrates

    dx/dt = -y - z,   dy/dt = x + a*y,   dz/dt = z*(x - c) + b,   a = b = 0.2, c = 5.7

from the key ``[x0, y0, z0]`` into sequences Kx, Ky, Kz, turns every value into the byte
``floor(frac(K) * 256)`` (IV-B step 4) and encrypts ``E = T xor Cx xor Cy xor Cz`` (step 5);
decryption is the same operation (IV-F steps 2-4). The paper gives no integrator, step or
transient; ours are classic RK4 with the steps below, documented here once.

Two extractions
---------------
``"paper"``  the literal step 4: one byte per integration step,
             ``floor(frac(Kx)*256) ^ floor(frac(Ky)*256) ^ floor(frac(Kz)*256)`` with
             ``frac(v) = v - floor(v)``; step h = 0.01, 1000-step transient (ours).
``"mixed"``  the vault default, at the larger step h = 1/8: from each coordinate the 32-bit
             window ``w = floor(frac(|v| * 2^(16-e)) * 2^32)``, ``e = floor(log2|v|)`` (bits
             4..35 of the IEEE-754 binary64 significand, read from its bit pattern), folded
             to 16 bits as ``(w mod 2^16) xor (w >> 16)`` -- 6 bytes per step (x, y, z, each
             little-endian). The window is relative to the exponent so it always holds real
             significand bits, whatever the magnitude (z spans four decades on the attractor).

Why not the literal bytes as the vault default (measured; ``tests/test_rossler.py``):
on a trajectory sampled every h = 0.01 a coordinate moves by ~0.01-0.2 per step, so
``floor(frac(K)*256)`` moves by a few units per step (the first golden bytes read
``...131111130d0d0f0b09...``), and Kz sits near 0 most of the time. The byte histogram of
Cx^Cy^Cz looks fine, consecutive bytes do not. First 2^17 bytes, key (0.1, 0.2, 0.3):

=====================================  ==============  ============  ===================
statistic                              paper (literal)  mixed        mixed, lanes (1 MiB)
=====================================  ==============  ============  ===================
byte entropy (bits)                     7.9982          7.9987        7.9998
byte chi^2, 255 dof (p)                 319 (0.004)     233 (0.83)    271 (0.23)
NIST monobit p                          0.41            0.67          0.78
NIST runs p                             0.26            0.22          0.45
NIST serial m=8, min p                  0.26            0.84          0.18
NIST serial m=16, min p                 0 (fails)       0.14          0.04
chi^2 of b[t]^b[t+1], 255 dof           149562 (fails)  234           271
=====================================  ==============  ============  ===================

(key (1, -2, 0.5): paper serial m=16 p = 0, b[t]^b[t+1] chi^2 = 143429.) Over 24 nonces x
1 MiB of the lane stream the p-values of all six tests are uniform (Kolmogorov-Smirnov
p = 0.15-0.85, smallest single p 0.003 of 144). The paper extraction's key sensitivity is
also weak: key x0 + 1e-10 reproduces the first 13.8-15.6 KB of its keystream (three keys),
as the error grows like exp(0.07 t); the mixed bytes differ from the first byte.

Why bits 4..35, folded: the lowest significand bits are biased by round-half-to-even ties
(bit 0 of x is 1 with probability 0.38, bit 1 0.48, bit 4 still 0.4965 -- 7 sigma over 2.5M
samples); XOR-folding bits 4..19 with bits 20..35 leaves every output bit within 0.0006 of
1/2 (2.7 sigma, the expected maximum of 16) and no finite-difference structure (below).

Why h = 1/8 and 16-bit windows: a smooth trajectory sampled with step h has finite differences
``Delta^k v ~ h^k v^(k)`` that shrink geometrically, so in any fixed window of significand bits
the k-th difference of consecutive words is concentrated near 0 for large enough k (a
distinguisher). With h = 1/16 and 32 low bits this shows from k = 5 (chi^2/df of the top byte
of Delta^k 12 at k = 5, 2800 at k = 6); with h = 1/8 and 24 bits a weak bias remains at
k = 10-14 (chi^2/df 2.5-3.4); with h = 1/8 and 16 bits chi^2/df stays 1.0-1.2 for every
k = 1..15 (2048 lanes x 600 steps), and so it does for the folded bits 4..35 actually used
(4096 lanes x 400 steps): the differences of the deterministic RK4 rounding noise (2^k ulp)
outgrow the smooth part before it gets below the window. h = 1/4 leaves RK4's stability
region on the stiff z spikes (h*(x-c) < -2.78) and diverges.

Reproducibility: the keystream code uses only IEEE-754 ``+ - * /`` (correctly rounded, no FMA
contraction in numpy ufuncs), ``floor``, exact int<->float conversions and integer bit
operations -- no exp/sin/pow, no BLAS -- so it is bit-identical on every conforming CPU. The
scalar single-trajectory integrator performs exactly the same operations in the same order as
the numpy lane integrator (checked by a test).

Speed: the ODE is sequential, so ``RosslerStream`` runs ``LANES`` independent trajectories
side by side with numpy (state shape (3, L), in-place ufuncs). Lane i's initial state comes
from HKDF-SHA256(key, salt=nonce, info=parameters) -> SHAKE-256 -> 53-bit uniforms mapped into
the box x, y in [-8, 8), z in [0, 1) (division and multiplication by powers of two only).
Output order: step, then coordinate, then lane. It streams in blocks of at most
``BLOCK_BYTES``, so memory stays bounded for any length.

Two APIs, named for what they are:
* ``rossler_keystream(key, n)`` / ``rossler_xor(data, key)``: the paper's single trajectory,
  the key IS ``(x0, y0, z0)``; sequential pure-Python RK4 (slow, ~1.5 us per step).
* ``RosslerStream(key_bytes, nonce)``: the lane-based vault keystream used by ``store.envelope``.

The cipher is not a vetted one (nobody has cryptanalysed it); the envelope adds nonces and a
MAC, and offers ChaCha20-Poly1305 for users who need vetted cryptography.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from speechvault.errors import InvalidInputError
from speechvault.paper import ROSSLER_A, ROSSLER_B, ROSSLER_C
from store.keys import hkdf_sha256

__all__ = [
    "EXTRACTIONS",
    "DEFAULT_EXTRACTION",
    "STEP",
    "TRAJECTORY_TRANSIENT",
    "LANE_TRANSIENT",
    "LANES",
    "BYTES_PER_STEP",
    "RosslerKey",
    "rk4_step_scalar",
    "rossler_keystream",
    "rossler_xor",
    "RosslerStream",
    "lane_initial_states",
]

EXTRACTIONS = ("mixed", "paper")
DEFAULT_EXTRACTION = "mixed"
# (ours) the paper gives no step: 0.01 is the usual one for eq. 8; 1/8 is the largest power of
# two RK4 keeps stable on the attractor, chosen by the measurements in the module docstring.
STEP = {"mixed": 0.125, "paper": 0.01}
# (ours) transient discarded before the first byte: 10 time units for the single trajectory
# (settles onto the attractor from the key); 1 time unit (mixed) for lanes, whose states are
# already pseudo-random (HKDF) and only need the nonlinearity to mix every bit of the state.
TRAJECTORY_TRANSIENT = {"mixed": 80, "paper": 1000}
LANE_TRANSIENT = {"mixed": 8, "paper": 200}
LANES = 8192                     # (ours) tuned by bench_cipher.py: 48 KB per step in "mixed"
BYTES_PER_STEP = {"mixed": 6, "paper": 1}   # per trajectory (lane) and step
MIXED_DROP_BITS = 4   # the lowest significand bits are biased by round-half-to-even ties
BLOCK_BYTES = 1 << 17            # keystream per block (2 steps): bounded memory, cache-resident
_DIVERGED = 1e3                  # |state| beyond this has left the attractor's basin (on it: < 25)
_LANE_BOX = ((-8.0, 16.0), (-8.0, 16.0), (0.0, 1.0))  # (low, width) per coordinate


def _check_extraction(extraction: str) -> str:
    if extraction not in EXTRACTIONS:
        raise InvalidInputError(f"unknown extraction {extraction!r}; use one of {EXTRACTIONS}")
    return extraction


@dataclass(frozen=True)
class RosslerKey:
    """The paper's key (IV-B step 3): the initial state [x0, y0, z0] of eq. 8."""

    x0: float
    y0: float
    z0: float

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.x0, self.y0, self.z0)):
            raise InvalidInputError("a Rossler key (x0, y0, z0) must be three finite numbers")

    def as_tuple(self) -> tuple[float, float, float]:
        return (float(self.x0), float(self.y0), float(self.z0))


# --- RK4 on eq. 8: scalar and lanes, the same operations in the same order -------------------
def rk4_step_scalar(x: float, y: float, z: float, h: float) -> tuple[float, float, float]:
    """One classic RK4 step of eq. 8; operation order mirrors ``_LaneIntegrator.step``."""
    h2, h6 = h / 2.0, h / 6.0
    k1x, k1y, k1z = -(y + z), y * ROSSLER_A + x, (x - ROSSLER_C) * z + ROSSLER_B
    x2, y2, z2 = k1x * h2 + x, k1y * h2 + y, k1z * h2 + z
    k2x, k2y, k2z = -(y2 + z2), y2 * ROSSLER_A + x2, (x2 - ROSSLER_C) * z2 + ROSSLER_B
    x3, y3, z3 = k2x * h2 + x, k2y * h2 + y, k2z * h2 + z
    k3x, k3y, k3z = -(y3 + z3), y3 * ROSSLER_A + x3, (x3 - ROSSLER_C) * z3 + ROSSLER_B
    x4, y4, z4 = k3x * h + x, k3y * h + y, k3z * h + z
    k4x, k4y, k4z = -(y4 + z4), y4 * ROSSLER_A + x4, (x4 - ROSSLER_C) * z4 + ROSSLER_B
    return (
        ((k2x + k3x) * 2.0 + k1x + k4x) * h6 + x,
        ((k2y + k3y) * 2.0 + k1y + k4y) * h6 + y,
        ((k2z + k3z) * 2.0 + k1z + k4z) * h6 + z,
    )


class _LaneIntegrator:
    """RK4 of eq. 8 on a (3, L) state with preallocated buffers and in-place ufuncs.

    Row 0 of every slope holds -dx/dt = y + z (one ufunc less); the per-row scale vectors
    (-h, h, h) restore the sign. Negation is exact in IEEE-754, so results are bit-identical
    to ``rk4_step_scalar``."""

    def __init__(self, lanes: int, h: float) -> None:
        signs = np.array([[-1.0], [1.0], [1.0]])
        self.h, self.h2, self.h6 = signs * h, signs * (h / 2.0), signs * (h / 6.0)
        self.k = np.empty((4, 3, lanes))
        self.stage = np.empty((3, lanes))
        self.tmp = np.empty(lanes)

    def _derivative(self, s: np.ndarray, out: np.ndarray) -> None:
        """eq. 8 with row 0 negated: out = (y+z, y*a + x, (x-c)*z + b)."""
        x, y, z = s
        np.add(y, z, out=out[0])
        np.multiply(y, ROSSLER_A, out=out[1])
        np.add(out[1], x, out=out[1])
        np.subtract(x, ROSSLER_C, out=self.tmp)
        np.multiply(self.tmp, z, out=out[2])
        np.add(out[2], ROSSLER_B, out=out[2])

    def _stage(self, k: np.ndarray, scale: np.ndarray, s: np.ndarray) -> np.ndarray:
        np.multiply(k, scale, out=self.stage)
        np.add(self.stage, s, out=self.stage)
        return self.stage

    def step(self, s: np.ndarray, out: np.ndarray) -> None:
        """out = RK4(s); ``out`` may be ``s``."""
        k1, k2, k3, k4 = self.k
        self._derivative(s, k1)
        self._derivative(self._stage(k1, self.h2, s), k2)
        self._derivative(self._stage(k2, self.h2, s), k3)
        self._derivative(self._stage(k3, self.h, s), k4)
        acc = self.stage
        np.add(k2, k3, out=acc)
        np.multiply(acc, 2.0, out=acc)
        np.add(acc, k1, out=acc)
        np.add(acc, k4, out=acc)
        np.multiply(acc, self.h6, out=acc)
        np.add(acc, s, out=out)


# --- byte extraction: states (..., 3, L) float64 -> bytes -------------------------------------
def _extract_paper(states: np.ndarray) -> np.ndarray:
    """IV-B step 4 literally: floor(frac(K)*256) per coordinate, XORed (step 5's Cx^Cy^Cz).

    frac(v) = v - floor(v) in [0, 1]; it can round to exactly 1.0 for tiny negative v, so the
    byte is taken mod 256 (frac = 1 is frac = 0)."""
    frac = states - np.floor(states)
    per_coordinate = (np.floor(frac * 256.0).astype(np.int64) & 0xFF).astype(np.uint8)
    return np.bitwise_xor.reduce(per_coordinate, axis=-2).reshape(-1)


def _extract_mixed(states: np.ndarray, scratch: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """Two bytes per coordinate: significand bits 4..35 folded to 16 by XOR of their halves.

    w = floor(|v| * 2^(48-e)) mod 2^32 = floor(frac(|v| * 2^(16-e)) * 2^32), e = floor(log2|v|),
    is read straight from the IEEE-754 bits; output (w mod 2^16) ^ (w >> 16), little-endian.
    ``scratch`` = (uint64, uint64, '<u2') buffers of at least ``states.shape`` (no allocation)."""
    window, upper, out = (None, None, None) if scratch is None else (b[: len(states)] for b in scratch)
    window = np.right_shift(states.view(np.uint64), np.uint64(MIXED_DROP_BITS), out=window)
    upper = np.right_shift(window, np.uint64(16), out=upper)
    np.bitwise_xor(window, upper, out=window)
    if out is None:
        out = np.empty(states.shape, dtype=np.dtype("<u2"))
    np.copyto(out, window, casting="unsafe")  # uint64 -> uint16 keeps the low 16 bits
    return out.reshape(-1).view(np.uint8)


def _mixed_scratch(shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    return np.empty(shape, np.uint64), np.empty(shape, np.uint64), np.empty(shape, np.dtype("<u2"))


_EXTRACT = {"mixed": _extract_mixed, "paper": _extract_paper}


# --- the paper's single trajectory: the key is (x0, y0, z0) ----------------------------------
def _as_key(key: RosslerKey | tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(key, RosslerKey):
        return key.as_tuple()
    try:
        x0, y0, z0 = (float(v) for v in key)
    except (TypeError, ValueError):
        raise InvalidInputError("a Rossler key is three numbers (x0, y0, z0)") from None
    return RosslerKey(x0, y0, z0).as_tuple()


def _check_bounded(states: np.ndarray, what: str) -> None:
    if not (np.isfinite(states).all() and np.abs(states).max(initial=0.0) < _DIVERGED):
        raise InvalidInputError(f"{what} left the Rossler attractor's basin (the trajectory diverges)")


def rossler_keystream(
    key: RosslerKey | tuple[float, float, float],
    n: int,
    *,
    extraction: str = DEFAULT_EXTRACTION,
    step: float | None = None,
    transient: int | None = None,
) -> np.ndarray:
    """First ``n`` keystream bytes (uint8 array) of the single trajectory starting at ``key``.

    The paper's Cx ^ Cy ^ Cz with ``extraction="paper"``; ``"mixed"`` takes 6 bytes per step.
    Sequential pure-Python RK4 (eq. 8): use ``RosslerStream`` for bulk data."""
    extraction = _check_extraction(extraction)
    x, y, z = _as_key(key)
    h = STEP[extraction] if step is None else float(step)
    skip = TRAJECTORY_TRANSIENT[extraction] if transient is None else int(transient)
    if not (0.0 < h <= 0.25) or skip < 0 or n < 0:
        raise InvalidInputError(f"invalid step {h}, transient {skip} or length {n}")
    for _ in range(skip):
        x, y, z = rk4_step_scalar(x, y, z, h)
    n_steps = -(-int(n) // BYTES_PER_STEP[extraction])
    trajectory = []
    append = trajectory.extend
    for _ in range(n_steps):
        x, y, z = rk4_step_scalar(x, y, z, h)
        append((x, y, z))
    states = np.array(trajectory, dtype=np.float64).reshape(n_steps, 3, 1)
    _check_bounded(states, "the key's trajectory")
    return _EXTRACT[extraction](states)[: int(n)].copy()


def rossler_xor(
    data: bytes, key: RosslerKey | tuple[float, float, float], *, extraction: str = "paper", **kw
) -> bytes:
    """The paper's cipher E = T xor Cx xor Cy xor Cz (IV-B step 5); it is its own inverse (IV-F).

    No nonce and no MAC: every file under one key gets the same keystream. Use
    ``store.envelope.seal`` in the vault."""
    stream = rossler_keystream(key, len(data), extraction=extraction, **kw)
    return np.bitwise_xor(np.frombuffer(data, dtype=np.uint8), stream).tobytes()


# --- the vault keystream: many lanes -------------------------------------------------------
def _parameter_label(extraction: str, h: float, lanes: int, transient: int) -> bytes:
    """Binds every keystream parameter into the lane derivation (other parameters, other lanes)."""
    return b"speechvault/rossler/v1 lanes|%s|%s|%d|%d" % (
        extraction.encode(), float(h).hex().encode(), lanes, transient,
    )


def lane_initial_states(key: bytes, nonce: bytes, lanes: int, label: bytes) -> np.ndarray:
    """(3, lanes) initial states: HKDF-SHA256(key, nonce, label) -> SHAKE-256 -> 53-bit uniforms.

    u = (64-bit word >> 11) / 2^53 is exact; the box (x, y in [-8, 8), z in [0, 1)) lies in the
    attractor's basin: 2^18 lanes over 250 time units at h = 1/8 stayed within |x| < 11.5,
    |y| < 10.8, 0 < z < 22.9 (measured once; a 2^13-lane test repeats it for 50 time units)."""
    seed = hkdf_sha256(key, salt=nonce, info=label, length=32)
    words = np.frombuffer(hashlib.shake_256(seed).digest(24 * lanes), dtype="<u8").reshape(3, lanes)
    uniform = (words >> np.uint64(11)).astype(np.float64) / 9007199254740992.0  # 2^53
    states = np.empty((3, lanes))
    for i, (low, width) in enumerate(_LANE_BOX):
        np.multiply(uniform[i], width, out=states[i])
        np.add(states[i], low, out=states[i])
    return states


class RosslerStream:
    """Incremental lane-based Rossler keystream for one (key, nonce): ``keystream(n)``, ``xor``.

    Reading is sequential: successive calls continue where the last one stopped, so a large
    file can be encrypted chunk by chunk with bounded memory."""

    def __init__(
        self,
        key: bytes,
        nonce: bytes,
        *,
        extraction: str = DEFAULT_EXTRACTION,
        step: float | None = None,
        lanes: int = LANES,
        transient: int | None = None,
    ) -> None:
        self.extraction = _check_extraction(extraction)
        self.step = STEP[extraction] if step is None else float(step)
        self.lanes = int(lanes)
        self.transient = LANE_TRANSIENT[extraction] if transient is None else int(transient)
        if not (0.0 < self.step <= 0.25) or not 1 <= self.lanes <= 1 << 20 or self.transient < 0:
            raise InvalidInputError("invalid Rossler stream parameters (step, lanes or transient)")
        if len(key) < 16:
            raise InvalidInputError("a Rossler stream key must have at least 16 bytes")
        label = _parameter_label(self.extraction, self.step, self.lanes, self.transient)
        self._state = lane_initial_states(bytes(key), bytes(nonce), self.lanes, label)
        self._integrator = _LaneIntegrator(self.lanes, self.step)
        self._bytes_per_step = BYTES_PER_STEP[self.extraction] * self.lanes
        self._max_block_steps = max(1, BLOCK_BYTES // self._bytes_per_step)
        self._history = np.empty((self._max_block_steps, 3, self.lanes))
        self._scratch = _mixed_scratch(self._history.shape) if self.extraction == "mixed" else None
        self._pending = np.empty(0, dtype=np.uint8)
        for _ in range(self.transient):
            self._integrator.step(self._state, self._state)

    def _generate(self, n_bytes: int) -> np.ndarray:
        """Integrate just enough steps (<= one block) for ``n_bytes``; returns the new bytes."""
        n_steps = min(self._max_block_steps, -(-n_bytes // self._bytes_per_step))
        previous = self._state
        for i in range(n_steps):
            self._integrator.step(previous, self._history[i])
            previous = self._history[i]
        np.copyto(self._state, self._history[n_steps - 1])
        _check_bounded(self._state, "a keystream lane")
        if self._scratch is not None:
            return _extract_mixed(self._history[:n_steps], self._scratch)
        return _extract_paper(self._history[:n_steps])

    def _chunks(self, n: int):
        """Yield consecutive keystream pieces totalling ``n`` bytes."""
        while n > 0:
            if self._pending.size == 0:
                self._pending = self._generate(n)
            piece, self._pending = self._pending[:n], self._pending[n:]
            n -= piece.size
            yield piece

    def keystream(self, n: int) -> np.ndarray:
        """The next ``n`` keystream bytes as a uint8 array."""
        if n < 0:
            raise InvalidInputError("keystream length must be >= 0")
        out = np.empty(int(n), dtype=np.uint8)
        pos = 0
        for piece in self._chunks(int(n)):
            out[pos : pos + piece.size] = piece
            pos += piece.size
        return out

    read = keystream

    def xor_into(self, buffer: bytearray | memoryview | np.ndarray) -> None:
        """XOR the next ``len(buffer)`` keystream bytes into a writable buffer, in place."""
        target = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, dtype=np.uint8)
        self._xor(target, target)

    def xor_to_array(self, data) -> np.ndarray:
        """``data`` (any bytes-like) XOR the next ``len(data)`` keystream bytes, as a new array."""
        source = np.frombuffer(data, dtype=np.uint8)
        out = np.empty(source.size, dtype=np.uint8)
        self._xor(source, out)
        return out

    def xor(self, data) -> bytes:
        """``data`` XOR the next ``len(data)`` keystream bytes (encrypts and decrypts)."""
        return self.xor_to_array(data).tobytes()

    def _xor(self, source: np.ndarray, out: np.ndarray) -> None:
        pos = 0
        for piece in self._chunks(source.size):
            end = pos + piece.size
            np.bitwise_xor(source[pos:end], piece, out=out[pos:end])
            pos = end
