"""Progress of long-running work, kept in Redis: it is fleeting, so it never touches the database's truth."""

from __future__ import annotations

from dataclasses import dataclass

import redis

TTL_SECONDS = 24 * 3600


@dataclass
class ImportProgress:
    client: redis.Redis

    @staticmethod
    def key(job_id: int) -> str:
        return f"invites:import:{job_id}:rows"

    def report(self, job_id: int, rows: int) -> None:
        self.client.set(self.key(job_id), rows, ex=TTL_SECONDS)

    def rows(self, job_id: int) -> int:
        value = self.client.get(self.key(job_id))
        return int(value) if value is not None else 0
