"""DynamoDB write units counted: what each write of a set of code paths costs the table and each of its indexes.

DynamoDB bills a put or an update one write unit per started KB of the larger of the item before and after it
(a refused conditional write: of the item as it stands, at least one); and, for each global secondary index, a
write when the write puts an item into it (its key attributes appear), takes one out (they go), changes what it
projects (one write), or moves it (its key changes: a delete and a put, two writes), each one unit per started
KB of the index entry (its keys, its projected attributes and 100 bytes of overhead). A write that changes
nothing an index holds costs that index nothing. A ``TransactWriteItems`` bills each of its puts and updates twice
on the table (DynamoDB prepares, then commits, each item: TRANSACTION_FACTOR), its index writes once.
:class:`WriteUnits` watches a boto3 DynamoDB client, reads each
written item before and after the write (through a client of its own, so counting adds no call to the counted
ones) and adds the units up by table or index and by partition::

    units = WriteUnits(clients.table)
    runner.process(...)
    units.take()  # {('table', 'jobs'): 3, ('by_tenant_list', 'jobs'): 2, ...}

The bench and ``tests/test_scale.py`` tie ``tools.scale``'s per-job figures to these counts.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

KB = 1024
INDEX_ENTRY_OVERHEAD_BYTES = 100
TABLE = "table"
TRANSACTION_FACTOR = 2  # a transactional write consumes twice a plain one's units


def units(size_bytes: int) -> int:
    """Write units for ``size_bytes``: one per started KB, at least one."""
    return max(1, math.ceil(size_bytes / KB))


def attribute_sizes(item: dict[str, Any]) -> dict[str, int]:
    """Each attribute's size as DynamoDB counts it, its name and its value (low-level ``{"S": ...}`` form or plain
    Python values): an index entry's size is the sum over its attributes, so an item sized once sizes its entries in
    every index too."""
    return {name: len(name.encode()) + _value_size(value) for name, value in item.items()}


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: the sum of its :func:`attribute_sizes`."""
    return sum(attribute_sizes(item).values())


Sizer = Callable[[dict[str, Any]], dict[str, int]]


def _value_size(value: Any) -> int:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPES:
        kind, inner = next(iter(value.items()))
        return _typed_size(kind, inner)
    return _plain_size(value)


_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})


def _typed_size(kind: str, inner: Any) -> int:
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(_number_size(v) for v in inner)
    return sum(len(v) for v in inner)  # BS


def _plain_size(value: Any) -> int:
    # The commonest kinds first, and loops rather than generators: this runs for every value of every item written.
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        size = 3
        for key, inner in value.items():
            size += len(str(key).encode()) + _plain_size(inner) + 1
        return size
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float | Decimal):
        return _number_size(str(value))
    if isinstance(value, list | tuple):
        size = 3
        for inner in value:
            size += _plain_size(inner) + 1
        return size
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, set | frozenset):
        return sum(_plain_size(v) for v in value)
    raise TypeError(f"no DynamoDB size for {type(value).__name__}")


def _number_size(text: str) -> int:
    """About one byte per two significant digits, plus one."""
    digits = str(text).lstrip("-").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


class Index:
    """A global secondary index as the table describes it: its key attributes and what it projects."""

    def __init__(self, name: str, keys: tuple[str, ...], table_keys: tuple[str, ...], projection: str,
                 include: tuple[str, ...] = ()):
        self.name, self.keys, self.table_keys, self.projection, self.include = name, keys, table_keys, projection, include

    def entry(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        """The item's entry in this index, or None when it has no entry (sparse: a key attribute missing)."""
        if item is None or any(key not in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        names = set(self.keys) | set(self.table_keys) | (set(self.include) if self.projection == "INCLUDE" else set())
        return {name: value for name, value in item.items() if name in names}

    def writes(self, old: dict[str, Any] | None, new: dict[str, Any] | None, *,
               sizes: Sizer = attribute_sizes) -> list[tuple[str, int]]:
        """``(partition, units)`` of each write to this index that turning ``old`` into ``new`` makes; ``sizes``
        gives an item's :func:`attribute_sizes` (a caller that sizes each item once passes its memo)."""
        before, after = self.entry(old), self.entry(new)
        if before == after:
            return []
        written = []
        moved = before is not None and after is not None and any(before[k] != after[k] for k in self.keys)
        if old is not None and before is not None and (after is None or moved):
            written.append((_plain_key(before[self.keys[0]]), self._units(before, sizes(old))))
        if new is not None and after is not None:
            written.append((_plain_key(after[self.keys[0]]), self._units(after, sizes(new))))
        return written

    @staticmethod
    def _units(entry: dict[str, Any], item_sizes: dict[str, int]) -> int:
        return units(sum(item_sizes[name] for name in entry) + INDEX_ENTRY_OVERHEAD_BYTES)


def indexes_of(description: dict[str, Any]) -> tuple[tuple[str, ...], list[Index]]:
    """The table's key attributes and its global secondary indexes, from DescribeTable's ``Table``."""
    table_keys = tuple(k["AttributeName"] for k in description["KeySchema"])
    found = []
    for gsi in description.get("GlobalSecondaryIndexes", []):
        projection = gsi["Projection"]
        found.append(Index(gsi["IndexName"], tuple(k["AttributeName"] for k in gsi["KeySchema"]), table_keys,
                           projection["ProjectionType"], tuple(projection.get("NonKeyAttributes", ()))))
    return table_keys, found


def _typed(value: Any) -> dict[str, Any]:
    """A key value in DynamoDB's low-level form (the Table resource hands its hooks plain values)."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPES:
        return value
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer().serialize(value)


def _plain_key(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value.values())))
    return str(value)


class WriteUnits:
    """Counts the write units of every PutItem and UpdateItem a boto3 DynamoDB client (or Table) makes."""

    def __init__(self, table: Any):
        low = getattr(getattr(table, "meta", None), "client", None) or table
        import boto3

        self._reader = boto3.client("dynamodb", region_name=low.meta.region_name, endpoint_url=low.meta.endpoint_url)
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[str, dict[str, Any], dict[str, Any] | None]] = {}
        self._layouts: dict[str, tuple[tuple[str, ...], list[Index]]] = {}
        self.by_index: Counter[tuple[str, str]] = Counter()  # (index or "table", table) -> units
        self.by_partition: Counter[tuple[str, str]] = Counter()  # (index or "table", partition) -> units
        self.writes: Counter[tuple[str, str]] = Counter()  # (index or "table", table) -> writes
        for operation in ("PutItem", "UpdateItem"):
            low.meta.events.register(f"before-parameter-build.dynamodb.{operation}", self._before, unique_id=f"wu-b-{operation}-{id(self)}")
            low.meta.events.register(f"after-call.dynamodb.{operation}", self._after, unique_id=f"wu-a-{operation}-{id(self)}")
        low.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", self._before_transaction,
                                 unique_id=f"wu-b-transact-{id(self)}")
        low.meta.events.register("after-call.dynamodb.TransactWriteItems", self._after_transaction,
                                 unique_id=f"wu-a-transact-{id(self)}")
        self._transactions: dict[int, list[tuple[str, dict[str, Any], dict[str, Any] | None]]] = {}

    def _layout(self, table: str) -> tuple[tuple[str, ...], list[Index]]:
        if table not in self._layouts:
            self._layouts[table] = indexes_of(self._reader.describe_table(TableName=table)["Table"])
        return self._layouts[table]

    def _read(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        except ClientError:
            return None

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        table = params["TableName"]
        table_keys = self._layout(table)[0]
        source = params.get("Key") or params.get("Item") or {}
        key = {name: _typed(source[name]) for name in table_keys}
        with self._lock:
            self._pending[threading.get_ident()] = (table, key, self._read(table, key))

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            table, key, old = self._pending.pop(threading.get_ident())
        refused = "Error" in parsed
        new = old if refused else self._read(table, key)
        size = max(item_size(old) if old else 0, 0 if refused else (item_size(new) if new else 0))
        partition = _plain_key(next(iter(key.values())))
        self._add(TABLE, table, partition, units(size))
        if refused:
            return
        for index in self._layout(table)[1]:
            for index_partition, count in index.writes(old, new):
                self._add(index.name, table, index_partition, count)

    def _before_transaction(self, params: dict[str, Any], **_: Any) -> None:
        pending = []
        for entry in params["TransactItems"]:
            for kind in ("Put", "Update"):
                if kind in entry:
                    table = entry[kind]["TableName"]
                    source = entry[kind].get("Key") or entry[kind].get("Item") or {}
                    key = {name: _typed(source[name]) for name in self._layout(table)[0]}
                    pending.append((table, key, self._read(table, key)))
        with self._lock:
            self._transactions[threading.get_ident()] = pending

    def _after_transaction(self, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            pending = self._transactions.pop(threading.get_ident())
        if "Error" in parsed:  # cancelled: nothing written (its units, a conflict's, are not modelled)
            return
        for table, key, old in pending:
            new = self._read(table, key)
            size = max(item_size(old) if old else 0, item_size(new) if new else 0)
            self._add(TABLE, table, _plain_key(next(iter(key.values()))), TRANSACTION_FACTOR * units(size))
            for index in self._layout(table)[1]:
                for index_partition, count in index.writes(old, new):
                    self._add(index.name, table, index_partition, count)

    def _add(self, where: str, table: str, partition: str, count: int) -> None:
        with self._lock:
            self.by_index[(where, table)] += count
            self.by_partition[(where, partition)] += count
            self.writes[(where, table)] += 1

    def take(self) -> dict[str, int]:
        """Units by table (``"table"``) and index name since the last take; the record starts again."""
        with self._lock:
            taken = {where: count for (where, _), count in self.by_index.items()}
            self.by_index.clear()
            self.by_partition.clear()
            self.writes.clear()
        return taken
