"""SharedSetting: the first holder applies, the last one restores, whatever the nesting or
threads (the umask and the BLAS thread count depend on it)."""

import threading

from speechvault.shared_setting import SharedSetting


def test_first_in_applies_last_out_restores_across_threads():
    state = {"value": "user", "applied": 0, "restored": []}

    def apply():
        state["applied"] += 1
        old, state["value"] = state["value"], "pinned"
        return old

    def restore(old):
        state["restored"].append(old)
        state["value"] = old

    s = SharedSetting(apply, restore)
    inside, release = threading.Barrier(3), threading.Event()

    def worker():
        with s.held():
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    with s.held():
        for t in threads:
            t.start()
        inside.wait()
        assert state["value"] == "pinned" and state["applied"] == 1
        with s.held():  # nested in the same thread
            assert state["applied"] == 1
    assert state["value"] == "pinned"  # the workers still hold it
    release.set()
    for t in threads:
        t.join()
    assert state["value"] == "user" and state["restored"] == ["user"]
