#!/usr/bin/env python
"""Write SVG screenshots of every TUI screen to docs/screenshots/.

    python tools/screenshots.py [--out docs/screenshots] [--size 120x40] [--fake]

Builds a throw-away vault from the example clips in ``speechvault/examples`` (scrypt at
log2_n=10) with the default model ``hashing/models/default.tflite`` -- or, with ``--fake`` or
when that model is absent, the test suite's deterministic ``FakeEncoder`` -- then drives the app
with Textual's pilot and saves one SVG per screen. Timings, timestamps and the file size are
frozen placeholders (``freeze=True``), like in the snapshot tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PW = "screenshot passphrase"
EXAMPLES = ROOT / "speechvault" / "examples"
DEFAULT_MODEL = ROOT / "hashing" / "models" / "default.tflite"


def build_vault(path: Path, encoder) -> None:
    from store.vault import Vault

    manifest = json.loads((EXAMPLES / "manifest.json").read_text())
    v = Vault.create(path, PW, encoder=encoder, kdf_log2_n=10)
    try:
        for clip in manifest["clips"]:
            # the real model predicts the category (its classes are the digits); the fake
            # encoder's classes mean nothing, so use the manifest's label there
            label = clip.get("label")
            category = None if encoder is None else (label if label is not None else "sentence")
            v.ingest([EXAMPLES / clip["file"]], category=category)
    finally:
        v.close()


def vault_class(encoder):
    from store.vault import Vault

    if encoder is None:
        return Vault

    class _Vault(Vault):
        @classmethod
        def open(cls, path, **kw):
            kw.setdefault("encoder", encoder)
            return super().open(path, **kw)

    return _Vault


async def settle(pilot) -> None:
    app = pilot.app
    for _ in range(600):
        await pilot.pause(0.02)
        if not [w for w in app.workers if w.node is app and w.is_running]:
            await pilot.pause()
            if not [w for w in app.workers if w.node is app and w.is_running]:
                break
    await pilot.pause()


async def shoot(out: Path, size: tuple[int, int], vault: Path, cls, work: Path,
                query: str) -> list[Path]:
    from speechvault.errors import VaultBusyError
    from tui.app import SpeechVaultApp

    written: list[Path] = []
    suffix = f"-{size[0]}x{size[1]}"

    def app(**kw) -> SpeechVaultApp:
        return SpeechVaultApp(vault, vault_cls=cls, freeze=True, **kw)

    def save(a, name: str) -> None:
        path = out / f"{name}{suffix}.svg"
        a.save_screenshot(path.name, path=str(out))
        written.append(path)

    os.environ["SPEECHVAULT_PASSPHRASE"] = PW
    a = app()
    async with a.run_test(size=size) as pilot:
        await settle(pilot)
        save(a, "library")
        await pilot.press("enter")
        await settle(pilot)
        save(a, "record")

    a = app(start_mode="search")
    async with a.run_test(size=size) as pilot:
        await settle(pilot)
        field = a.screen.query_one("#query")
        field.value = query
        await pilot.press("enter")
        await settle(pilot)
        save(a, "search")

    a = app(start_mode="ingest", browse_root=work / "audio", read_only=False)  # --write
    async with a.run_test(size=size) as pilot:
        await settle(pilot)
        a.screen.query_one("#tree").focus()
        await pilot.press("a")
        a.screen.query_one("#category").value = "tones"
        a.screen.query_one("#category").focus()
        await pilot.press("enter")
        await settle(pilot)
        save(a, "ingest")

    del os.environ["SPEECHVAULT_PASSPHRASE"]
    a = app()
    async with a.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("enter", "d")
        await settle(pilot)
        await pilot.press(*"wrong")
        await pilot.press("enter")
        await settle(pilot)
        save(a, "passphrase")
        a.show_error(VaultBusyError(
            "the vault is locked by another process (a writer); try again when it is done"))
        await pilot.pause()
        save(a, "busy")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--size", action="append", default=None,
                    help="WxH, repeatable (default: 80x24 and 120x40)")
    ap.add_argument("--fake", action="store_true", help="use the tests' FakeEncoder")
    args = ap.parse_args(argv)
    sizes = [tuple(int(x) for x in s.lower().split("x")) for s in (args.size or ["80x24", "120x40"])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    encoder = None
    if args.fake or not DEFAULT_MODEL.exists():
        from tests.fakes import FakeEncoder

        encoder = FakeEncoder(K=384, C=4, seed=7, clip_seconds=0.5,
                              class_names=["zero", "one", "two", "three"])
        print("using the FakeEncoder" + ("" if args.fake else f" ({DEFAULT_MODEL} absent)"))

    import numpy as np
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vault_dir = work / "vault"
        vault_dir.mkdir()
        vault = vault_dir / "demo.duckdb"
        build_vault(vault, encoder)
        # the query: the manifest's demo query after the paper's -3 dB CPO, in the cwd
        demo = json.loads((EXAMPLES / "manifest.json").read_text()).get("demo_query",
                                                                          "7_en-us_3.wav")
        y, sr = sf.read(EXAMPLES / demo, dtype="float32")
        sf.write(work / "query-3dB.wav", np.clip(y * 10 ** (-3 / 20), -1, 1), sr)
        audio = work / "audio"
        audio.mkdir()
        rng = np.random.default_rng(0)
        for name, f in (("tone_a.wav", 440.0), ("tone_b.wav", 660.0)):
            t = np.arange(int(0.6 * 16000)) / 16000
            sf.write(audio / name, (0.3 * np.sin(2 * np.pi * f * t)
                                    + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)
        (audio / "broken.wav").write_bytes(b"this is not audio at all")
        cwd = os.getcwd()
        os.chdir(work)
        try:
            backup = work / "demo.duckdb.bak"
            shutil.copy(vault, backup)
            for size in sizes:
                written = asyncio.run(shoot(out, size, vault, vault_class(encoder), work,
                                            "query-3dB.wav"))
                shutil.copy(backup, vault)  # undo the ingest for the next size
                for p in written:
                    print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
        finally:
            os.chdir(cwd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
