"""Bodies checked against their declared Structs; messages read off the same JSON Schema the
OpenAPI document shows."""
from typing import Annotated, Any, ClassVar

import msgspec
import pytest
from msgspec import UNSET, Meta, Struct, UnsetType

from mlapi.errors import BadRequest
from mlapi.protocols.validation import Alternatives, decodes, phrase, read


class Inner(Struct):
    flag: bool = False


class Body(Struct):
    alternatives: ClassVar[Alternatives] = Alternatives(("a", "b"), True, "one of a, b; found {found}")

    a: Annotated[list[str], Meta(min_length=1, max_length=3)] | UnsetType = UNSET
    b: Annotated[int | UnsetType, Meta(examples=[7])] = UNSET
    inner: Inner | None = None


@pytest.mark.parametrize("body,message", [
    ({"a": ["x"], "b": 1}, "one of a, b; found ['a', 'b']"),
    ({}, "one of a, b; found none"),
    ({"a": []}, '"a" must be a non-empty list of strings (at most 3 items), got []'),
    ({"a": ["x", 2]}, '"a" must be a non-empty list of strings (at most 3 items), got 2 at a[1]'),
    ({"b": "7"}, '"b" must be an integer such as 7, got "7"'),
    ({"b": True}, '"b" must be an integer such as 7, got true'),
    ({"b": 1, "inner": {"flag": "no"}}, '"inner.flag" must be true or false, got "no"'),
    ({"b": 1, "inner": 3}, '"inner" must be an object or null, got 3'),
    ([1], "the body must be an object, got [1]"),
])
def test_messages_say_what_to_send_and_what_was_there(body, message):
    with pytest.raises(BadRequest) as raised:
        read(body, Body)
    assert raised.value.status_code == 400 and raised.value.message == message


def test_a_valid_body_is_the_struct_and_unknown_keys_are_ignored():
    assert read({"b": 2, "other": 1}, Body) == Body(b=2)


def test_decodes_makes_a_decoder_carrying_its_schema():
    @decodes(Body, prefix="body: ")
    def total(body: Body) -> int:
        return body.b

    assert total({"b": 5}) == 5 and total.schema is Body and total.__name__ == "total"
    with pytest.raises(BadRequest) as raised:
        total({"b": "x"})
    assert raised.value.message.startswith('body: "b" must be an integer')


@pytest.mark.parametrize("annotation,words", [
    (bool, "true or false"),
    (bool | None, "true or false or null"),
    (Annotated[str, Meta(min_length=1, max_length=9)], "a non-empty string (at most 9 characters)"),
    (Annotated[str, Meta(min_length=3)], "a string of at least 3 characters"),
    (list[int | str], "a list of integers or strings"),
    (list[Any], "a list"),
    (dict[str, Any], "an object"),
    (float, "a number"),
    (Any, "a JSON value"),
])
def test_phrase_of_a_schema(annotation, words):
    assert phrase(msgspec.json.schema(annotation)) == words
