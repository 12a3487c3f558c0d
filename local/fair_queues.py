"""SQS fair queues in moto: a standard queue's messages delivered so that one message group's backlog does not
hold back another group's messages.

AWS makes every standard queue whose messages carry a ``MessageGroupId`` a fair queue (docs/capacity.md: the lane
messages carry their tenant). moto keeps the group id but delivers a standard queue's messages oldest first, so
locally a quiet tenant's job waits behind a noisy tenant's whole backlog. What is emulated, from AWS's description
("How Amazon SQS fair queues work"):

- A tenant is a message group; a message without a group is a tenant of its own.
- A tenant is *noisy* while it holds more than ``NOISY_SHARE`` (10 %) of the queue's messages in flight and at
  least ``noisy_min_in_flight`` of its own (AWS: about 30).
- A receive returns quiet tenants' visible messages first; noisy tenants' only when no quiet tenant's message is
  visible, the noisy tenant with the fewest messages in flight first. Nothing is dropped or throttled: a noisy
  tenant's messages wait longer, that is all.
- Within a receive each message taken counts as in flight at once, so a receive of 10 takes turns between
  groups rather than taking 10 from the first.

Not emulated: AWS's second measure (a tenant's share of recent processing time), its approximations, and the
five minutes without sends after which a tenant stops being noisy (here a tenant is judged afresh at each
receive, from what it has in flight then). FIFO queues are left as moto has them.

The local pipeline counts a tenant as noisy from its first message in flight (``LOCAL_NOISY_MIN_IN_FLIGHT``), so
that a quiet tenant's job overtakes the backlog there too.

:func:`install` patches moto's ``Queue.messages`` (the visible messages a receive walks, in order) for the whole
process while installed; the local moto front (:class:`local.aws_server.AwsServer`) installs it while it runs. Unit tests'
``mock_aws`` is not patched unless a test installs it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.utils import unix_time_millis
from moto.sqs.models import Message, Queue

NOISY_SHARE = 0.1
AWS_NOISY_MIN_IN_FLIGHT = 30
# The local pipeline's workers hold a few messages at a time, never AWS's 30: a tenant counts as noisy at once.
LOCAL_NOISY_MIN_IN_FLIGHT = 1

_lock = threading.Lock()
_installs: list[int] = []  # noisy_min_in_flight of each install still in force, newest last
_original = Queue.messages


def fair_order(messages: list[Message], in_flight: dict[str | None, int], *, noisy_min_in_flight: int) -> list[Message]:
    """``messages`` (visible, oldest first) in the order a fair queue delivers them, given each group's messages in
    flight (``in_flight``, updated as the order takes messages: each counts as in flight once taken)."""
    groups: dict[Any, list[Message]] = defaultdict(list)
    for message in messages:
        groups[message.group_id if message.group_id else ("ungrouped", message.id)].append(message)
    counts = {key: in_flight.get(key, 0) if isinstance(key, str) else 0 for key in groups}
    total = sum(in_flight.values())
    order: list[Message] = []
    heads = {key: 0 for key in groups}

    def rank(key: Any) -> tuple[bool, int, float]:
        noisy = counts[key] >= noisy_min_in_flight and counts[key] > NOISY_SHARE * total
        # Quiet tenants' messages oldest first, as a standard queue; noisy ones' fewest in flight first.
        return noisy, counts[key] if noisy else 0, groups[key][heads[key]].sent_timestamp or 0

    while heads:
        key = min(heads, key=rank)
        order.append(groups[key][heads[key]])
        counts[key] += 1
        total += 1
        heads[key] += 1
        if heads[key] == len(groups[key]):
            del heads[key]
    return order


def _fair_messages(queue: Queue) -> list[Message]:
    visible = _original.fget(queue)  # type: ignore[attr-defined]
    with _lock:
        noisy_min = _installs[-1] if _installs else None
    if noisy_min is None or queue.fifo_queue or len({m.group_id or m.id for m in visible}) < 2:
        return visible  # one tenant: nothing to reorder (the common case, kept cheap: moto reads this often)
    now = unix_time_millis()
    in_flight: dict[str | None, int] = defaultdict(int)
    for message in queue._messages:
        if message.approximate_receive_count and message.visible_at >= now and message.group_id:
            in_flight[message.group_id] += 1
    return fair_order(visible, in_flight, noisy_min_in_flight=noisy_min)


def install(*, noisy_min_in_flight: int = AWS_NOISY_MIN_IN_FLIGHT) -> None:
    """Deliver every standard queue's messages as a fair queue does, until the matching :func:`uninstall`."""
    if noisy_min_in_flight < 1:
        raise ValueError(f"noisy_min_in_flight={noisy_min_in_flight}: need at least 1")
    with _lock:
        _installs.append(noisy_min_in_flight)
        Queue.messages = property(_fair_messages)  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    with _lock:
        if _installs:
            _installs.pop()
        if not _installs:
            Queue.messages = _original  # type: ignore[method-assign]


@contextmanager
def fair_queues(*, noisy_min_in_flight: int = AWS_NOISY_MIN_IN_FLIGHT) -> Iterator[None]:
    install(noisy_min_in_flight=noisy_min_in_flight)
    try:
        yield
    finally:
        uninstall()
