"""Once per period across processes, on a real Redis: two beats firing together run the body once."""

from __future__ import annotations

import threading
import uuid

from invites.adapters.locks import once_per
from invites.readmodels.health import redis_client


def test_two_concurrent_callers_run_the_body_once(redis_url: str) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    runs: list[str] = []
    results: list[object] = []
    start = threading.Barrier(2)

    def beat(who: str) -> None:
        client = redis_client(redis_url)
        try:
            start.wait(10)
            results.append(once_per(client, name, 60, lambda: runs.append(who) or who))
        finally:
            client.close()

    threads = [threading.Thread(target=beat, args=(who,)) for who in ("beat-1", "beat-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(runs) == 1
    assert sorted(results, key=str) == sorted([None, runs[0]], key=str)

    client = redis_client(redis_url)
    try:
        # Later in the same period: still skipped. Another task's lock is its own.
        assert once_per(client, name, 60, lambda: "again") is None
        assert once_per(client, f"{name}-other", 60, lambda: "other") == "other"
        assert 0 < client.pttl(f"invites:once:{name}") <= 48_000
        client.delete(f"invites:once:{name}", f"invites:once:{name}-other")
    finally:
        client.close()
