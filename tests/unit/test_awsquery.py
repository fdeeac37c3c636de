"""The AWS Query codec (STS), against botocore's own serializer and parser:
every operation's input written by botocore's QuerySerializer decodes to
the same values, every answer the codec writes is read back by botocore's
QueryParser as given, and no form whatever makes the decoder raise
anything but a ValidationException."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.errors import ValidationException
from keycask.http.awsquery import (
    MAX_BODY,
    MAX_FIELDS,
    QueryCodec,
    compile_pattern,
    snake_case,
)

MODEL: dict[str, Any] = Loader().load_service_model("sts", "service-2")
SERVICE = ServiceModel(MODEL, "sts")
SHAPES: dict[str, Any] = MODEL["shapes"]
CODEC = QueryCodec(MODEL)
OPERATIONS = sorted(MODEL["operations"])
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd]")

# -- botocore's side of the wire --


def form(operation: str, params: Mapping[str, Any]) -> bytes:
    """The body botocore sends for ``params`` (serializer, then its request preparer)."""
    serializer = create_serializer("query", include_validation=False)
    request = serializer.serialize_to_request(params, SERVICE.operation_model(operation))
    prepared = AWSRequest(method="POST", url="https://sts.example/", data=request["body"]).prepare()
    body = prepared.body
    assert isinstance(body, str | bytes)
    return body.encode() if isinstance(body, str) else body


def parse_answer(operation: str | None, body: bytes, status: int = 200) -> Any:
    shape = SERVICE.operation_model(operation).output_shape if operation else None
    return create_parser("query").parse({"body": body, "headers": {}, "status_code": status}, shape)


def snaked(value: Any, shape_name: str) -> Any:
    """``value`` (botocore's form) as the codec decodes it (snake_case keys)."""
    shape = SHAPES[shape_name]
    if shape["type"] == "structure":
        return {snake_case(k): snaked(v, shape["members"][k]["shape"]) for k, v in value.items()}
    if shape["type"] == "list":
        return [snaked(item, shape["member"]["shape"]) for item in value]
    if shape["type"] == "map":
        return {k: snaked(v, shape["value"]["shape"]) for k, v in value.items()}
    return value


# -- values of a shape, as hypothesis draws them --

_ALPHABET = "abcXYZ019_+=,.@-:/ "


def _string(shape: Mapping[str, Any], *, xml: bool = False) -> st.SearchStrategy[str]:
    low = int(shape.get("min", 0))
    high = min(int(shape.get("max", 40)), low + 40)
    if "enum" in shape:
        return st.sampled_from(shape["enum"])
    pattern = shape.get("pattern")
    if pattern is None:
        if xml:
            text = st.text(min_size=low, max_size=high).map(lambda s: _NOT_XML.sub("", s))
            return text.filter(lambda s: low <= len(s))
        return st.text(min_size=low, max_size=high)
    matcher = compile_pattern(pattern)
    one_class = re.fullmatch(r"(\[(?:[^\]\\]|\\.)*\])[*+]", pattern)
    base: st.SearchStrategy[str]
    if "\\p{" in pattern:
        base = st.text(
            alphabet=st.characters(categories=("L", "N", "Zs")) | st.sampled_from("_.:/=+-@"),
            min_size=low,
            max_size=high,
        )
    elif one_class is not None:
        # One character class repeated: its characters, at the lengths allowed.
        chars = st.from_regex(re.compile(one_class.group(1), re.ASCII), fullmatch=True)
        base = st.text(
            alphabet=chars, min_size=max(low, 1 if pattern.endswith("+") else 0), max_size=high
        )
    else:
        base = st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True)
    return base.filter(lambda s: low <= len(s) <= int(shape.get("max", 10**9))).filter(
        lambda s: matcher.fullmatch(s) is not None
    )


def values(shape_name: str, *, top: bool = False, xml: bool = False) -> st.SearchStrategy[Any]:
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        members = {k: values(v["shape"], xml=xml) for k, v in shape["members"].items()}
        if not top:
            # Every member present: an empty structure is not on the wire at all.
            return st.fixed_dictionaries(members) if members else st.just({})
        required = set(shape.get("required", ()))
        return st.fixed_dictionaries(
            {k: s for k, s in members.items() if k in required},
            optional={k: s for k, s in members.items() if k not in required},
        )
    if kind == "list":
        low = int(shape.get("min", 0))
        high = min(int(shape.get("max", 3)), 3)
        return st.lists(values(shape["member"]["shape"], xml=xml), min_size=low, max_size=high)
    if kind == "map":
        return st.dictionaries(
            values(shape["key"]["shape"], xml=xml),
            values(shape["value"]["shape"], xml=xml),
            max_size=3,
        )
    if kind == "string":
        return _string(shape, xml=xml)
    if kind == "integer":
        return st.integers(int(shape.get("min", -(2**31))), int(shape.get("max", 2**31 - 1)))
    if kind == "timestamp":
        return st.datetimes(
            min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    raise AssertionError(f"no strategy for {kind}")


# -- the table is the model's, whole --


def test_every_operation_of_the_model_has_a_decoder_and_an_encoder() -> None:
    assert CODEC.operation_names() == frozenset(MODEL["operations"])
    assert CODEC.api_version == "2011-06-15"
    unsigned = {name for name, op in MODEL["operations"].items() if op.get("authtype") == "none"}
    assert CODEC.unsigned_operations() == unsigned
    assert "AssumeRoleWithWebIdentity" in unsigned and "GetCallerIdentity" not in unsigned


def test_every_pattern_of_the_model_compiles() -> None:
    patterns = {s["pattern"] for s in SHAPES.values() if "pattern" in s}
    assert any("\\p{" in p for p in patterns)  # the tag patterns: Java's Unicode classes
    for pattern in patterns:
        compile_pattern(pattern)


def test_a_model_with_a_shape_type_it_does_not_know_is_refused_at_load() -> None:
    model = {**MODEL, "shapes": {**SHAPES, "arnType": {"type": "quaternion"}}}
    with pytest.raises(ValueError, match="quaternion"):
        QueryCodec(model)


def test_a_model_of_another_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="Query"):
        QueryCodec({**MODEL, "metadata": {**MODEL["metadata"], "protocol": "json"}})


def test_tag_patterns_take_unicode_letters_and_digits_as_java_does() -> None:
    key = compile_pattern(SHAPES["tagKeyType"]["pattern"])
    assert key.fullmatch("Équipe_1 é:/=+-@.")
    assert key.fullmatch("部署") and key.fullmatch("٣")
    assert not key.fullmatch("")  # "+": at least one
    for bad in ("a\tb", "a;b", "a\x00", "😀", "a*b", "a\nb"):
        assert not key.fullmatch(bad), bad
    value = compile_pattern(SHAPES["tagValueType"]["pattern"])
    assert value.fullmatch("")  # "*"
    # \w stays ASCII, as in Java.
    assert not compile_pattern(SHAPES["roleSessionNameType"]["pattern"]).fullmatch("é")


# -- requests: botocore writes, the codec reads --


@pytest.mark.parametrize("operation", OPERATIONS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_operation_input_written_by_botocore_decodes_to_the_same_values(
    operation: str, data: st.DataObject
) -> None:
    shape = MODEL["operations"][operation]["input"]["shape"]
    params = data.draw(values(shape, top=True))
    fields = CODEC.parse(form(operation, params))
    assert fields["Action"] == operation and fields["Version"] == "2011-06-15"
    assert CODEC.decode(operation, fields) == snaked(params, shape)


def test_assume_role_form_by_hand() -> None:
    body = (
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole"
        b"%2Fdeploy&RoleSessionName=ci+run&Tags.member.1.Key=team&Tags.member.1.Value=a+b"
        b"&Tags.member.2.Key=env&Tags.member.2.Value=&TransitiveTagKeys.member.1=team"
        b"&PolicyArns.member.1.arn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FReadOnlyAccess"
        b"&DurationSeconds=900"
    )
    with pytest.raises(ValidationException, match="roleSessionName"):
        CODEC.decode("AssumeRole", CODEC.parse(body))  # a space is not in [\w+=,.@-]*
    decoded = CODEC.decode("AssumeRole", CODEC.parse(body.replace(b"ci+run", b"ci-run")))
    assert decoded == {
        "role_arn": "arn:aws:iam::111122223333:role/deploy",
        "role_session_name": "ci-run",
        "tags": [{"key": "team", "value": "a b"}, {"key": "env", "value": ""}],
        "transitive_tag_keys": ["team"],
        "policy_arns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
        "duration_seconds": 900,
    }


def test_an_empty_list_is_the_query_protocols_name_with_no_value() -> None:
    body = form(
        "AssumeRole",
        {"RoleArn": "arn:aws:iam::111122223333:role/r", "RoleSessionName": "s1", "Tags": []},
    )
    assert b"Tags=&" in body + b"&"
    assert CODEC.decode("AssumeRole", CODEC.parse(body))["tags"] == []


ROLE = "RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fr&RoleSessionName=s1"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("&Frobnicate=1", "Unknown parameter 'Frobnicate'"),
        (
            "&Tags.member.1.Key=a&Tags.member.1.Value=b&Tags.member.1.Colour=c",
            "Tags.member.1.Colour",
        ),
        ("&Tags.member.2.Key=a&Tags.member.2.Value=b", "Unknown parameter 'Tags.member.2.Key'"),
        ("&Tags.member.01.Key=a&Tags.member.01.Value=b", "Tags.member.01"),
        ("&Tags.member.1.Key=a", "Value null at 'tags.1.member.value'"),
        ("&Tags.item.1.Key=a&Tags.item.1.Value=b", "Unknown parameter 'Tags.item.1.Key'"),
        ("&Tags=x", "Member must be a list"),
        ("&DurationSeconds=899", "greater than or equal to 900"),
        ("&DurationSeconds=43201", "less than or equal to 43200"),
        ("&DurationSeconds=1e3", "Member must be an integer"),
        ("&DurationSeconds=+900", "Member must be an integer"),
        ("&DurationSeconds=", "Member must be an integer"),
        ("&ExternalId=a", "have length greater than or equal to 2"),
        ("&RoleArn.Sub=1", "Unknown parameter 'RoleArn.Sub'"),
        ("&TokenCode=12345x", "regular expression pattern"),
    ],
)
def test_refusals_name_what_is_wrong(extra: str, message: str) -> None:
    with pytest.raises(ValidationException) as refused:
        CODEC.decode("AssumeRole", CODEC.parse((ROLE + extra).encode()))
    assert message in refused.value.message
    assert refused.value.message.startswith(("1 validation error detected: ", "2 validation"))


def test_required_members_and_sensitive_values() -> None:
    with pytest.raises(ValidationException) as refused:
        CODEC.decode("AssumeRoleWithWebIdentity", CODEC.parse(b"WebIdentityToken=abc"))
    message = refused.value.message
    assert "Value null at 'roleArn'" in message and "Value null at 'roleSessionName'" in message
    assert "webIdentityToken" in message and "'abc'" not in message  # sensitive: never quoted
    assert "3 validation errors detected" in message


@pytest.mark.parametrize(
    "body",
    [
        b"Action=GetCallerIdentity&Version",  # a field with no '='
        b"Action=Get%zzCallerIdentity",  # a broken escape
        b"Action=%",
        b"RoleArn=%FF%FE",  # not UTF-8 once decoded
        "RoleSessionName=é".encode(),  # not ASCII on the wire
        b"Action=A&Action=B",  # twice
    ],
)
def test_malformed_forms_are_validation_errors(body: bytes) -> None:
    with pytest.raises(ValidationException):
        CODEC.parse(body)


def test_empty_pieces_are_nothing_and_plus_is_a_space() -> None:
    assert CODEC.parse(b"&a=1&&b=x+y%2B&") == {"a": "1", "b": "x y+"}
    assert CODEC.parse(b"") == {}


def test_a_form_of_too_many_fields_is_refused() -> None:
    body = "&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode()
    with pytest.raises(ValidationException, match="more than"):
        CODEC.parse(body)


_ASSUME = {
    "RoleArn": "arn:aws:iam::111122223333:role/app",
    "RoleSessionName": "s1",
}


def test_forms_built_to_be_costly_are_refused_unread() -> None:
    """AssumeRoleWithWebIdentity's form is read before any signature: a
    name of thousands of dots (a deep tree, a deep recursion), a list index
    of thousands of digits (int() refuses past 4,300) and an oversized body
    are refused as validation errors, never a 500."""
    with pytest.raises(ValidationException, match="an STS request has at most"):
        CODEC.parse(b"a=" + b"x" * MAX_BODY)
    with pytest.raises(ValidationException, match="is not a member of any STS input"):
        CODEC.parse(b"X" + b".a" * 50_000 + b"=1")
    with pytest.raises(ValidationException, match="is not a member of any STS input"):
        CODEC.parse(b"RoleArn" + b"x" * 300 + b"=1")
    huge_index = {"Tags.member." + "1" * 5000 + ".Key": "k"}
    with pytest.raises(ValidationException, match="Unknown parameter"):
        CODEC.decode("AssumeRole", {**_ASSUME, **huge_index})
    # The deepest names STS has still parse.
    fields = CODEC.parse(b"ProvidedContexts.member.1.ProviderArn=x&Tags.member.50.Key=k")
    assert len(fields) == 2


_NAMES = st.sampled_from(
    [
        "Action",
        "Version",
        "RoleArn",
        "RoleSessionName",
        "Tags",
        "Tags.member",
        "Tags.member.1",
        "Tags.member.1.Key",
        "Tags.member.1.Value",
        "Tags.member.2.Key",
        "Tags.member.0.Key",
        "PolicyArns.member.1.arn",
        "PolicyArns.member.1",
        "TransitiveTagKeys.member.1",
        "TransitiveTagKeys.member.3",
        "DurationSeconds",
        "ProvidedContexts.member.1.ProviderArn",
        "Tags.entry.1.key",
        "",
        ".",
        "a..b",
    ]
) | st.text(max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    operation=st.sampled_from(OPERATIONS),
    fields=st.dictionaries(_NAMES, st.text(max_size=30), max_size=8),
)
def test_the_decoder_only_ever_refuses_with_a_validation_error(
    operation: str, fields: dict[str, str]
) -> None:
    try:
        CODEC.decode(operation, fields)
    except ValidationException as refused:
        assert refused.message


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_the_form_parser_only_ever_refuses_with_a_validation_error(body: bytes) -> None:
    try:
        fields = CODEC.parse(body)
    except ValidationException:
        return
    with contextlib.suppress(ValidationException):
        CODEC.decode("AssumeRole", fields)


# -- answers: the codec writes, botocore reads --


def _restored(value: Any, shape_name: str) -> Any:
    """A botocore value with snake_case keys, as the codec's encoder reads them."""
    shape = SHAPES[shape_name]
    if shape["type"] == "structure":
        return {snake_case(k): _restored(v, shape["members"][k]["shape"]) for k, v in value.items()}
    if shape["type"] == "list":
        return [_restored(item, shape["member"]["shape"]) for item in value]
    if shape["type"] == "map":
        return {k: _restored(v, shape["value"]["shape"]) for k, v in value.items()}
    return value


@pytest.mark.parametrize("operation", OPERATIONS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_answer_is_read_back_by_botocores_parser(operation: str, data: st.DataObject) -> None:
    shape = MODEL["operations"][operation]["output"]["shape"]
    result = data.draw(values(shape, top=True, xml=True))
    body = CODEC.encode(operation, _restored(result, shape), "req-1")
    parsed = parse_answer(operation, body)
    assert parsed.pop("ResponseMetadata")["RequestId"] == "req-1"
    assert parsed == result


def test_a_typed_result_is_written_from_its_attributes() -> None:
    from keycask.service.core.sts_results import (
        AssumedRoleUser,
        AssumeRoleResult,
        Credentials,
        GetCallerIdentityResult,
    )

    body = CODEC.encode(
        "GetCallerIdentity",
        GetCallerIdentityResult(
            "AIDAEXAMPLE", "111122223333", "arn:aws:iam::111122223333:user/a&b"
        ),
        "rid",
    )
    assert body.startswith(
        b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<GetCallerIdentityResult>"
    )
    assert parse_answer("GetCallerIdentity", body)["Arn"] == "arn:aws:iam::111122223333:user/a&b"
    expires = datetime(2026, 12, 7, 13, 0, 0, 359000, tzinfo=UTC)
    result = AssumeRoleResult(
        Credentials("ASIAEXAMPLEEXAMPLE12", "secret", "token/+=", expires),
        AssumedRoleUser("AROAEXAMPLE:s1", "arn:aws:sts::111122223333:assumed-role/r/s1"),
        packed_policy_size=6,
    )
    parsed = parse_answer("AssumeRole", CODEC.encode("AssumeRole", result, "rid"))
    assert parsed["Credentials"]["Expiration"] == expires
    assert parsed["Credentials"]["SessionToken"] == "token/+="
    assert parsed["AssumedRoleUser"]["AssumedRoleId"] == "AROAEXAMPLE:s1"
    assert parsed["PackedPolicySize"] == 6
    assert b"2026-12-07T13:00:00.359Z" in CODEC.encode("AssumeRole", result, "rid")


def test_a_result_that_does_not_fit_the_model_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        CODEC.encode("GetCallerIdentity", {"user_id": 5}, "rid")
    with pytest.raises(TypeError):
        CODEC.encode("GetCallerIdentity", {"colour": "red"}, "rid")
    with pytest.raises(TypeError):
        CODEC.encode("GetCallerIdentity", {"arn": "a\x00b"}, "rid")


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(["InvalidClientTokenId", "ValidationError"]), message=st.text())
def test_errors_are_read_back_by_botocores_parser(code: str, message: str) -> None:
    body = CODEC.encode_error(code, message, "rid-9", sender=True)
    parsed = parse_answer("GetCallerIdentity", body, status=403)
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Type"] == "Sender"
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-9"
    shown = re.sub("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "\ufffd", message)
    assert (parsed["Error"]["Message"] or "") == shown  # botocore reads <Message/> as None
