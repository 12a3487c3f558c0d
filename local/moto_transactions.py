"""DynamoDB's TransactWriteItems in the local moto server: all or nothing, without touching other requests' writes.

moto's own keeps a deep copy of every table a transaction names and, when any part fails, puts the copies back in
place of the tables. Under the local pipeline's concurrent requests that was wrong twice: the copy iterates a table
another request is writing (``RuntimeError: dictionary changed size during iteration``, answered as a 500), and a
rollback wiped every write other requests made meanwhile (jobs lost locally, never in AWS); the copy also cost a
whole table per terminal write. This one checks every condition before writing anything (a refusal writes nothing:
nothing to roll back), then applies the writes, putting back only the items it wrote if one of them fails; one
transaction at a time (DynamoDB refuses transactions that conflict). Its answers are moto's (the same cancellation
reasons, the item with ``ReturnValuesOnConditionCheckFailure``).
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.Lock()
_OPS = ("ConditionCheck", "Put", "Delete", "Update")


def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _LOCK:
        plan, errors = _checked(backend, transact_items)
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
        written: list[tuple[str, dict[str, Any], Any]] = []
        try:
            for op_type, op, table_name, key, current in plan:
                if op_type == "ConditionCheck":
                    continue
                written.append((table_name, key, current))
                names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    backend.put_item(table_name, op["Item"])
                elif op_type == "Delete":
                    backend.delete_item(table_name, key)
                else:
                    backend.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                        expression_attribute_names=names, expression_attribute_values=values)
        except Exception:
            for table_name, key, before in reversed(written):  # only what this transaction wrote goes back
                if before is None:
                    backend.delete_item(table_name, key)
                else:
                    backend.put_item(table_name, before.to_json()["Attributes"])
            raise


def _checked(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Each part's key, its item as it stands and whether its condition holds; nothing written."""
    plan: list[Any] = []
    errors: list[tuple[str | None, str | None, Any]] = []
    seen: set[tuple[str, str]] = set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in _OPS:
            errors.append(("ValueError", "Unsupported transaction operation", None))
            continue
        table_name = op["TableName"]
        if op_type == "Put":
            table = backend.get_table(table_name)
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        unique = (str(table_name), str(dict(sorted(key.items()))))
        if unique in seen:
            raise MultipleTransactionsException()
        seen.add(unique)
        current = backend.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")).expr(current):
            old = current.to_json()["Attributes"] if current and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            errors.append(("ConditionalCheckFailed", str(ConditionalCheckFailed().message), old))
            continue
        errors.append((None, None, None))
        plan.append((op_type, op, table_name, key, current))
    return plan, errors


def install() -> None:
    """Process-wide, idempotent: the local moto server's transactions are these."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign,assignment]
