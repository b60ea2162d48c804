"""What a search costs with each way of holding the vault (docs/reliability.md, issue 17 item 4).

    python tools/session_cost.py VAULT QUERY.wav [QUERY.wav ...]

One process, one handle per variant, every query searched once after a warm-up search:

* held: one connection for the handle's life (the library default, the behaviour before);
* shared: a session per operation, the reader's connection kept idle between sessions (chosen);
* shared, reconnecting: the same with the idle connection dropped before every search, i.e. a
  DuckDB connect per search (the first design, and what every search pays after a writer's
  commit).

Prints the median wall time and CPU time of ``Vault.search`` per variant.
"""

from __future__ import annotations

import sys
import time

from store.vault import Vault


def measure(vault: str, queries: list[str], shared: bool, reconnect: bool) -> tuple[float, float]:
    v = Vault.open(vault, shared=shared)
    try:
        v.search(queries[0])  # loads the model
        wall, cpu = [], []
        for q in queries:
            if reconnect:
                v._access._drop_idle()
            t0, c0 = time.perf_counter(), time.process_time()
            v.search(q)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        v.close()
    wall.sort()
    cpu.sort()
    return wall[len(wall) // 2], cpu[len(cpu) // 2]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    vault, queries = argv[0], argv[1:]
    for name, shared, reconnect in (("held", False, False), ("shared", True, False),
                                    ("shared, reconnecting", True, True)):
        wall, cpu = measure(vault, queries, shared, reconnect)
        print(f"{name:22s} median wall {wall * 1e3:6.1f} ms  median CPU {cpu * 1e3:6.1f} ms "
              f"({len(queries)} searches)")
    with open("/proc/loadavg") as f:
        print("load:", f.read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
