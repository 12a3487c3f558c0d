"""The one check of a whole request body: numbers DynamoDB stores, text UTF-8 encodes, bounded nesting."""

import json

import pytest

from jobcore.errors import BadRequestError, InvalidInputError
from jobcore.jsonbody import check, parse
from jobcore.limits import MAX_JSON_DEPTH
from jobcore.requests import parse_json

DEEP_FIELD = "input.messages[0].content[1].x"


def body_with(value: str) -> str:
    """A claude.messages body with ``value`` (JSON text) at ``DEEP_FIELD``, where no task looks."""
    return ('{"task": "claude.messages", "input": {"max_tokens": 5, "messages": [{"role": "user", "content": '
            '[{"type": "text", "text": "hi"}, {"type": "text", "text": "yo", "x": ' + value + '}]}]}}')


@pytest.mark.parametrize(("number", "why"), [
    ("1e400", "too large"),
    ("-1E400", "too large"),
    ("1e126", "too large"),
    ("9.99999999999999999e125", "too large"),  # rounds up to 1e126 as a float
    ("1e-131", "too small"),
    ("-1e-400", "too small"),  # Python would silently make it 0.0
    ("1.2345678901234567890123456789012345678901", "38 significant digits"),
    ("123456789012345678901234567890123456789", "38 significant digits"),
    ("-123456789012345678901234567890123456789", "38 significant digits"),
    ("1" + "0" * 5000, "38 significant digits"),  # past Python's own int-from-text limit
])
def test_a_number_dynamodb_cannot_store_is_422_naming_its_field(number, why):
    with pytest.raises(InvalidInputError) as raised:
        parse(body_with(number))
    assert raised.value.field == DEEP_FIELD and why in str(raised.value)


@pytest.mark.parametrize("number", [
    "0", "-0.0", "0e-500", "1e-130", "-1E-130", "9.99e125", "12345678901234567890123456789012345678",
    "1.0000000000000000000000000000000000000000000",  # trailing zeros are not significant
    "0.000000000000000000000000000000000000000001", "3.141592653589793", "-17",
])
def test_numbers_dynamodb_stores_pass(number):
    assert parse(body_with(number))["input"]["messages"][0]["content"][1]["x"] == json.loads(number)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_400_naming_the_field(constant):
    with pytest.raises(BadRequestError) as raised:
        parse(body_with(constant))
    assert raised.value.field == DEEP_FIELD and constant in str(raised.value)


def test_nesting_is_bounded_with_a_400_whether_python_could_parse_it_or_not():
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse(nested) == json.loads(nested)
    one_more = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(BadRequestError, match=f"deeper than {MAX_JSON_DEPTH} levels") as raised:
        parse(one_more)
    assert raised.value.field == "body" + "[0]" * MAX_JSON_DEPTH
    with pytest.raises(BadRequestError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        parse('{"input": ' + "[" * 50_000 + "]" * 50_000 + "}")  # json.loads itself gives up (RecursionError)


@pytest.mark.parametrize(("text", "field"), [
    (body_with('"\\ud800"'), DEEP_FIELD),
    (body_with('{"\\udfff": 1}'), DEEP_FIELD + '["\\udfff"]'),
    ('{"task": "t", "metadata": {"k\\ud800": "v"}}', 'metadata["k\\ud800"]'),
    ('["ok", "\\ud83d"]', "body[1]"),
])
def test_a_lone_surrogate_in_a_value_or_a_key_is_400_naming_where(text, field):
    with pytest.raises(BadRequestError, match="lone surrogate") as raised:
        parse(text)
    assert raised.value.field == field


def test_a_surrogate_pair_is_one_character_and_fine():
    assert parse('"\\ud83d\\ude00"') == "\U0001F600"


def test_an_empty_key_anywhere_is_422_since_dynamodb_refuses_empty_attribute_names():
    with pytest.raises(InvalidInputError) as raised:
        parse(body_with('{"": 1}'))
    assert raised.value.field == DEEP_FIELD + '[""]'


def test_a_field_name_quotes_an_odd_key_bounded():
    with pytest.raises(InvalidInputError) as raised:
        parse('{"metadata": {"' + "k" * 10_000 + '": 1e999}}')
    assert raised.value.field.startswith('metadata["kkk') and "(10000 characters)" in raised.value.field
    assert len(str(raised.value)) < 400


def test_check_covers_values_built_in_python_too():
    with pytest.raises(InvalidInputError):
        check({"x": [float("inf")]})
    with pytest.raises(InvalidInputError):
        check({"x": 10**40})
    check({"x": [1.5, "ok", None, True, {"y": 10**37}]})


@pytest.mark.parametrize(("body", "message"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", "empty"),
    ("", "empty"),
    ("{bad", "not valid JSON"),
])
def test_parse_json_takes_bytes_and_text(body, message):
    with pytest.raises(BadRequestError, match=message):
        parse_json(body)
    assert parse_json(b'{"a": 1}') == {"a": 1}
