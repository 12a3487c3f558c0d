"""LaneWaker over ECS: a lane's service with no task at all is asked for one (desired count 0 → 1).

One attempt is a ``DescribeServices`` of the lane's service and, only when it has a desired count of 0 and
no running and no pending task, an ``UpdateService(desiredCount=1)``. It never lowers a count and never
sets one above 1, so routers waking the same lane at once cannot push it past the scaling policy's bounds
(every lane's maximum is at least 1), and a service already scaled out is left alone. The backlog step
policy then does the rest, as before: more tasks for a longer queue, and back to the minimum when idle.

The window between the describe and the update is a few milliseconds: if the backlog policy raised the
count to more than 1 in exactly that window, this update would set it back to 1 until the policy's next
evaluation (a minute) raises it again. Nothing is lost either way; the jobs wait in the queue.

The call is on the submit request's path, so it has its own client: short timeouts, one attempt, no
retries; every failure is logged and answered False (``jobcore.wake.GatedWaker`` also rate-limits it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class LaneService:
    """Where a lane's workers run: the ECS service (name or ARN) and its cluster (None: the default cluster)."""

    cluster: str | None
    service: str

    @classmethod
    def from_arn(cls, service: str) -> LaneService:
        """A service ARN in ECS's long format (``arn:aws:ecs:<region>:<account>:service/<cluster>/<name>``) names its
        cluster too; anything else is taken as a service of the default cluster."""
        resource = service.split(":", 5)[5] if service.startswith("arn:") and service.count(":") >= 5 else ""
        parts = resource.split("/")
        cluster = parts[1] if len(parts) == 3 and parts[0] == "service" and parts[1] else None
        return cls(cluster=cluster, service=service)

    def where(self) -> dict[str, str]:
        return {"cluster": self.cluster} if self.cluster else {}


def ecs_client() -> Any:
    """The waker's own ECS client: bounded, one attempt (AWS_ENDPOINT_URL points it at moto locally)."""
    import boto3
    from botocore.config import Config

    return boto3.client("ecs", config=Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                                              retries={"total_max_attempts": 1, "mode": "standard"}))


class EcsLaneWaker:
    """``client``: an ECS client, or None to make the waker's own (:func:`ecs_client`) on the first wake, so that a
    router which only reads never loads ECS's service model."""

    def __init__(self, client: Any, services: Mapping[str, LaneService]) -> None:
        self._client = client
        self._services = dict(services)
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = ecs_client()
            return self._client

    def wake(self, lane: str) -> bool:
        where = self._services.get(lane)
        if where is None:
            return False
        try:
            found = self.client.describe_services(**where.where(), services=[where.service])["services"]
            if not found:
                log.warning("lane %s: no ECS service %s in %s to wake", lane, where.service, where.cluster)
                return False
            service = found[0]
            idle = (service.get("status") == "ACTIVE" and service.get("desiredCount") == 0
                    and service.get("runningCount") == 0 and service.get("pendingCount") == 0)
            if not idle:
                return False
            self.client.update_service(**where.where(), service=where.service, desiredCount=1)
        except Exception as error:  # noqa: BLE001 - the job is queued; the lane's backlog alarm still starts a task
            log.warning("lane %s: could not ask ECS for a worker (%s); its backlog alarm will", lane, error)
            return False
        log.info("lane %s: asked ECS for a worker (service %s had no task)", lane, where.service)
        return True
