"""The AWS JSON 1.1 codec, checked by hand and against botocore's own serializer and parser."""

from __future__ import annotations

import base64
import dataclasses
import enum
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import orjson
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from keycask.errors import SerializationException, UnknownOperationException, ValidationException
from keycask.http.awsjson import (
    SERVICE_LIMITS,
    Codec,
    _compile_pattern,
    encode_error,
    snake_case,
)
from kms_model import MODEL, SERVICE, SHAPES, snaked

CODEC = Codec.load()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET = "TOP-SECRET-PLAINTEXT-7f3a"


# -- helpers: botocore's side of the wire, and the codec's view of the same values --


def serialize(operation: str, params: Mapping[str, Any]) -> bytes:
    serializer = create_serializer("json", include_validation=True)
    body: bytes = serializer.serialize_to_request(params, SERVICE.operation_model(operation))[
        "body"
    ]
    return body


def parse(operation: str, body: bytes) -> Any:
    shape = SERVICE.operation_model(operation).output_shape
    response = {"body": body, "headers": {}, "status_code": 200}
    parsed = create_parser("json").parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def input_shape(operation: str) -> str:
    name: str = MODEL["operations"][operation]["input"]["shape"]
    return name


def output_shape(operation: str) -> str | None:
    output = MODEL["operations"][operation].get("output")
    return None if output is None else str(output["shape"])


_DATACLASSES: dict[str, type] = {}
_ENUMS: dict[str, type[enum.Enum]] = {}


def as_objects(value: Any, shape_name: str) -> Any:
    """botocore's params as service-layer objects: dataclasses, Enums, tuples."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        members = shape["members"]
        cls = _DATACLASSES.get(shape_name)
        if cls is None:
            fields = [(snake_case(m), Any, dataclasses.field(default=None)) for m in members]
            cls = _DATACLASSES[shape_name] = dataclasses.make_dataclass(
                shape_name, fields, frozen=True
            )
        return cls(**{snake_case(k): as_objects(v, members[k]["shape"]) for k, v in value.items()})
    if kind == "list":
        return tuple(as_objects(item, shape["member"]["shape"]) for item in value)
    if kind == "map":
        return {k: as_objects(v, shape["value"]["shape"]) for k, v in value.items()}
    if kind == "string" and "enum" in shape:
        if shape_name not in _ENUMS:
            members = {v: v for v in shape["enum"]}
            _ENUMS[shape_name] = cast("type[enum.Enum]", enum.Enum(shape_name, members))
        return _ENUMS[shape_name](value)
    return value


# Values for every patterned string shape; a test checks each one is valid.
PATTERN_EXAMPLES: dict[str, tuple[str, ...]] = {
    "AccountIdType": ("111122223333",),
    "AliasNameType": ("alias/my-key", "alias/aws/s3_x:1"),
    "BackingKeyIdResponseType": ("0a", "f" * 64),
    "BackingKeyIdType": ("0123456789abcdef" * 4,),
    "CloudHsmClusterIdType": ("cluster-234abcdefgh", "cluster-" + "a" * 16),
    "GrantConstraintSourceArnType": ("arn:aws:kms:us-east-1:111122223333:key/x",),
    "GrantNameType": ("grant_1-a:b/c",),
    "KeyMaterialDescriptionType": ("material v1.0 / imported",),
    "MarkerType": ("next page \u00ff", "x"),
    "PolicyNameType": ("default",),
    "PolicyType": ('{\n\t"Version": "2012-10-17", "Id": "caf\u00e9"\r\n}',),
    "PrincipalIdType": ("arn:aws:iam::111122223333:role/Admin+x=y,z.w@q",),
    "RegionType": ("us-east-1", "us-gov-west-1"),
    "ServicePrincipalType": ("cloudtrail.amazonaws.com",),
    "XksKeyIdType": ("key-1_a.b",),
    "XksProxyAuthenticationAccessKeyIdType": ("ABCDEFGHIJKLMNOPQRST",),
    "XksProxyAuthenticationRawSecretAccessKeyType": (
        "abcdefghijklmnopqrstuvwxyz0123456789+/=ABCD",
    ),
    "XksProxyUriEndpointType": ("https://xks.example.com",),
    "XksProxyUriPathType": ("/kms/xks/v1", "/prefix/kms/xks/v12"),
    "XksProxyVpcEndpointServiceNameType": ("com.amazonaws.vpce.us-east-1.vpce-svc-0123abcd",),
}

# Sizes in the differential test: every shape at its lower bound, at its upper
# bound (capped where the bound is huge), and somewhere between with odd text.
LOW, HIGH, MIXED = 0, 1, 2
ODD_CHARS = 'ak\u00e9\u20ac\U0001f600"\\\n\t/'


class Sampler:
    """Valid values for a shape, in botocore's form (CamelCase, bytes, datetimes)."""

    def __init__(self, seed: int, variant: int, *, whole_seconds: bool) -> None:
        self.rng = random.Random(seed)
        self.variant = variant
        self.whole_seconds = whole_seconds

    def size(self, low: int, high: int, cap: int) -> int:
        high = min(high, max(low, cap))
        if self.variant == LOW:
            return low
        if self.variant == HIGH:
            return high
        return self.rng.randint(low, high)

    def member(self, structure: str, member: str, name: str) -> Any:
        # Where the service bounds a member more tightly than the model does.
        bounds = SERVICE_LIMITS.get((structure, member))
        if bounds is not None:
            return self.size(*bounds, bounds[1])
        return self.value(name)

    def value(self, name: str) -> Any:
        shape = SHAPES[name]
        kind = shape["type"]
        low, high = shape.get("min", 0), shape.get("max", 2**31 - 1)
        if kind == "structure":
            wanted = shape.get("required", []) if self.variant == LOW else shape["members"]
            return {m: self.member(name, m, shape["members"][m]["shape"]) for m in wanted}
        if kind == "list":
            count = self.size(low, high, 3)
            return [self.value(shape["member"]["shape"]) for _ in range(count)]
        if kind == "map":
            count = self.size(low, high, 3)
            return {
                f"{i}{self.value(shape['key']['shape'])}": self.value(shape["value"]["shape"])
                for i in range(count)
            }
        if kind == "string":
            return self.string(name, shape, low, high)
        if kind == "blob":
            return self.rng.randbytes(self.size(low, high, 8192))
        if kind == "integer":
            return self.size(low, high, high)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "timestamp":
            millis = 0 if self.whole_seconds else self.rng.randrange(1000)
            return EPOCH + timedelta(seconds=self.rng.randrange(4_000_000_000), milliseconds=millis)
        raise AssertionError(f"no sampler for {kind}")

    def string(self, name: str, shape: Mapping[str, Any], low: int, high: int) -> str:
        if "enum" in shape:
            return str(self.rng.choice(shape["enum"]))
        if "pattern" in shape:
            return self.rng.choice(PATTERN_EXAMPLES[name])
        size = self.size(low, high, 2048)
        alphabet = ODD_CHARS if self.variant == MIXED else "k"
        return "".join(self.rng.choice(alphabet) for _ in range(size))


OPERATIONS = sorted(MODEL["operations"])
OUTPUT_OPERATIONS = [op for op in OPERATIONS if output_shape(op) is not None]


def decode_error(operation: str, body: bytes) -> str:
    with pytest.raises((ValidationException, SerializationException)) as caught:
        CODEC.decode(operation, body)
    message: str = caught.value.message
    return message


def validation(operation: str, document: Any) -> str:
    with pytest.raises(ValidationException) as caught:
        CODEC.decode(operation, orjson.dumps(document))
    return caught.value.message


def serialization(operation: str, body: bytes) -> str:
    with pytest.raises(SerializationException) as caught:
        CODEC.decode(operation, body)
    return caught.value.message


# -- names --


@pytest.mark.parametrize(
    ("aws", "python"),
    [
        ("KeyId", "key_id"),
        ("AWSAccountId", "aws_account_id"),
        ("CustomerMasterKeySpec", "customer_master_key_spec"),
        ("GrantTokens", "grant_tokens"),
        ("DryRunModifiers", "dry_run_modifiers"),
        ("XksKeyId", "xks_key_id"),
        ("NextMarker", "next_marker"),
        ("CiphertextBlob", "ciphertext_blob"),
        ("Pkcs11Slot", "pkcs11_slot"),
    ],
)
def test_snake_case_examples(aws: str, python: str) -> None:
    assert snake_case(aws) == python


def test_snake_case_is_injective_within_every_structure() -> None:
    for name, shape in SHAPES.items():
        if shape["type"] != "structure":
            continue
        members = list(shape["members"])
        snakes = [snake_case(m) for m in members]
        assert len(set(snakes)) == len(members), name
        for snake in snakes:
            assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", snake), snake


def test_every_model_pattern_compiles_and_has_an_example() -> None:
    patterned = {name: s for name, s in SHAPES.items() if "pattern" in s}
    assert patterned
    for shape in patterned.values():
        _compile_pattern(shape["pattern"])
    assert set(patterned) <= set(PATTERN_EXAMPLES), "add examples for new patterned shapes"


@pytest.mark.parametrize("name", sorted(PATTERN_EXAMPLES))
def test_pattern_examples_satisfy_their_shape(name: str) -> None:
    shape = SHAPES[name]
    for example in PATTERN_EXAMPLES[name]:
        assert shape.get("min", 0) <= len(example) <= shape.get("max", 10**9)
        assert _compile_pattern(shape["pattern"]).fullmatch(example), example


def test_operation_names_are_the_models() -> None:
    assert CODEC.operation_names() == frozenset(MODEL["operations"])
    assert {"Encrypt", "Decrypt", "CreateKey", "ListAliases"} <= CODEC.operation_names()


# -- hand-written round trips --


@dataclasses.dataclass(frozen=True)
class EncryptResult:
    ciphertext_blob: bytes
    key_id: str
    encryption_algorithm: enum.Enum


class IntValued(enum.Enum):
    A = 1


class Algorithm(enum.Enum):
    SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"


class KeyState(enum.StrEnum):
    ENABLED = "Enabled"


def test_encrypt_round_trip() -> None:
    plaintext = bytes(range(256)) * 16
    params = {
        "KeyId": "alias/app",
        "Plaintext": plaintext,
        "EncryptionContext": {"KeyId": "stays CamelCase", "tenant": "acme", "": ""},
        "GrantTokens": ["token-1"],
        "DryRun": False,
    }
    assert CODEC.decode("Encrypt", serialize("Encrypt", params)) == {
        "key_id": "alias/app",
        "plaintext": plaintext,
        "encryption_context": {"KeyId": "stays CamelCase", "tenant": "acme", "": ""},
        "grant_tokens": ["token-1"],
        "dry_run": False,
    }
    result = EncryptResult(b"\x01" * 100, KEY_ARN, Algorithm.SYMMETRIC_DEFAULT)
    body = CODEC.encode("Encrypt", result)
    assert list(orjson.loads(body)) == ["CiphertextBlob", "KeyId", "EncryptionAlgorithm"]
    assert parse("Encrypt", body) == {
        "CiphertextBlob": b"\x01" * 100,
        "KeyId": KEY_ARN,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }


def test_decrypt_round_trip() -> None:
    body = serialize("Decrypt", {"CiphertextBlob": b"\x00\xff" * 20, "KeyId": KEY_ARN})
    assert CODEC.decode("Decrypt", body) == {"ciphertext_blob": b"\x00\xff" * 20, "key_id": KEY_ARN}
    result = {"key_id": KEY_ARN, "plaintext": b"hello", "encryption_algorithm": "SYMMETRIC_DEFAULT"}
    assert parse("Decrypt", CODEC.encode("Decrypt", result)) == {
        "KeyId": KEY_ARN,
        "Plaintext": b"hello",
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }


def test_create_key_round_trip_with_tags_and_key_metadata() -> None:
    params = {
        "Description": "payments",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "Tags": [{"TagKey": "team", "TagValue": "pay"}, {"TagKey": "env", "TagValue": ""}],
        "MultiRegion": True,
    }
    assert CODEC.decode("CreateKey", serialize("CreateKey", params)) == {
        "description": "payments",
        "key_spec": "SYMMETRIC_DEFAULT",
        "tags": [{"tag_key": "team", "tag_value": "pay"}, {"tag_key": "env", "tag_value": ""}],
        "multi_region": True,
    }
    created = datetime(2024, 5, 1, 12, 30, 15, 250_999, tzinfo=UTC)
    deletion = datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    metadata = {
        "aws_account_id": "111122223333",
        "key_id": "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn": KEY_ARN,
        "creation_date": created,
        "enabled": True,
        "key_state": KeyState.ENABLED,
        "deletion_date": deletion,
        "encryption_algorithms": (Algorithm.SYMMETRIC_DEFAULT, "RSAES_OAEP_SHA_256"),
        "multi_region_configuration": {
            "multi_region_key_type": "PRIMARY",
            "primary_key": {"arn": KEY_ARN, "region": "eu-west-1"},
            "replica_keys": [{"arn": KEY_ARN, "region": "us-east-1"}],
        },
        "pending_deletion_window_in_days": 7,
        "description": None,
    }
    parsed = parse("CreateKey", CODEC.encode("CreateKey", {"key_metadata": metadata}))
    assert parsed == {
        "KeyMetadata": {
            "AWSAccountId": "111122223333",
            "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
            "Arn": KEY_ARN,
            "CreationDate": created.replace(microsecond=250_000),
            "Enabled": True,
            "KeyState": "Enabled",
            "DeletionDate": deletion,
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256"],
            "MultiRegionConfiguration": {
                "MultiRegionKeyType": "PRIMARY",
                "PrimaryKey": {"Arn": KEY_ARN, "Region": "eu-west-1"},
                "ReplicaKeys": [{"Arn": KEY_ARN, "Region": "us-east-1"}],
            },
            "PendingDeletionWindowInDays": 7,
        }
    }


def test_timestamps_are_epoch_seconds_with_milliseconds() -> None:
    metadata = {"key_id": "k", "creation_date": EPOCH + timedelta(seconds=1_700_000_000.123456)}
    body = orjson.loads(CODEC.encode("DescribeKey", {"key_metadata": metadata}))
    assert body == {"KeyMetadata": {"KeyId": "k", "CreationDate": 1_700_000_000.123}}
    before_epoch = {"key_id": "k", "creation_date": EPOCH - timedelta(milliseconds=1500)}
    body = orjson.loads(CODEC.encode("DescribeKey", {"key_metadata": before_epoch}))
    assert body["KeyMetadata"]["CreationDate"] == -1.5


def test_decoded_timestamps_are_aware_utc() -> None:
    document = {"KeyId": "k", "ImportToken": "AA==", "EncryptedKeyMaterial": "AA==", "ValidTo": 1.5}
    decoded = CODEC.decode("ImportKeyMaterial", orjson.dumps(document))
    assert decoded["valid_to"] == EPOCH + timedelta(seconds=1.5)
    assert decoded["valid_to"].tzinfo is UTC


def test_list_aliases_and_list_keys_outputs() -> None:
    day = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    aliases = {
        "aliases": [
            {
                "alias_name": "alias/a",
                "alias_arn": KEY_ARN,
                "target_key_id": "k1",
                "creation_date": day,
            },
            {"alias_name": "alias/aws/s3", "alias_arn": KEY_ARN},
        ],
        "next_marker": "m2",
        "truncated": True,
    }
    assert parse("ListAliases", CODEC.encode("ListAliases", aliases)) == {
        "Aliases": [
            {"AliasName": "alias/a", "AliasArn": KEY_ARN, "TargetKeyId": "k1", "CreationDate": day},
            {"AliasName": "alias/aws/s3", "AliasArn": KEY_ARN},
        ],
        "NextMarker": "m2",
        "Truncated": True,
    }
    keys = {"keys": [{"key_id": "k1", "key_arn": KEY_ARN}], "truncated": False}
    assert orjson.loads(CODEC.encode("ListKeys", keys)) == {
        "Keys": [{"KeyId": "k1", "KeyArn": KEY_ARN}],
        "Truncated": False,
    }
    assert orjson.loads(CODEC.encode("ListKeys", {"keys": []})) == {"Keys": []}


def test_empty_body_is_an_empty_object() -> None:
    assert CODEC.decode("ListKeys", b"") == {}
    assert CODEC.decode("ListKeys", b"{}") == {}
    assert CODEC.decode("ListKeys", b'{"Limit": null, "Marker": null}') == {}


def test_operations_without_output_encode_nothing() -> None:
    assert output_shape("CreateAlias") is None
    assert CODEC.encode("CreateAlias", None) == b""
    assert parse("CreateAlias", b"") == {}
    with pytest.raises(TypeError):
        CODEC.encode("CreateAlias", {})


def test_memberless_output_is_an_empty_object() -> None:
    assert CODEC.encode("ConnectCustomKeyStore", None) == b"{}"
    assert CODEC.encode("ConnectCustomKeyStore", {}) == b"{}"


def test_encode_error_body() -> None:
    body = encode_error("NotFoundException", 'Key "x" not found')
    assert body == b'{"__type":"NotFoundException","message":"Key \\"x\\" not found"}'
    response = {"body": body, "headers": {}, "status_code": 400}
    parsed = create_parser("json").parse(response, None)
    assert parsed["Error"] == {"Code": "NotFoundException", "Message": 'Key "x" not found'}


# -- validation errors --


def test_required_members_are_all_reported() -> None:
    assert validation("Encrypt", {}) == (
        "2 validation errors detected: "
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null; "
        "Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
    )
    with pytest.raises(ValidationException, match=r"^2 validation errors detected"):
        CODEC.decode("Encrypt", b"")


def test_null_means_absent_so_a_required_null_is_missing() -> None:
    message = validation("Encrypt", {"KeyId": None, "Plaintext": "AA=="})
    assert message == (
        "1 validation error detected: "
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    )


@pytest.mark.parametrize(
    ("operation", "document", "path", "rule"),
    [
        (
            "Encrypt",
            {"KeyId": "", "Plaintext": "AA=="},
            "keyId",
            "have length greater than or equal to 1",
        ),
        (
            "Encrypt",
            {"KeyId": "k" * 2049, "Plaintext": "AA=="},
            "keyId",
            "have length less than or equal to 2048",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": ""},
            "plaintext",
            "have length greater than or equal to 1",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": base64.b64encode(b"x" * 4097).decode()},
            "plaintext",
            "have length less than or equal to 4096",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "GrantTokens": ["t"] * 11},
            "grantTokens",
            "have length less than or equal to 10",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "GrantTokens": [""]},
            "grantTokens.1.member",
            "have length greater than or equal to 1",
        ),
        (
            "GenerateRandom",
            {"NumberOfBytes": 0},
            "numberOfBytes",
            "have value greater than or equal to 1",
        ),
        (
            "GenerateRandom",
            {"NumberOfBytes": 1025},
            "numberOfBytes",
            "have value less than or equal to 1024",
        ),
        (
            "ListKeys",
            {"Limit": 1001},
            "limit",
            "have value less than or equal to 1000",
        ),
        (
            "CreateAlias",
            {"AliasName": "alias/bad name!", "TargetKeyId": "k"},
            "aliasName",
            "satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ),
        (
            "ListKeys",
            {"Marker": "\u0100"},
            "marker",
            "satisfy regular expression pattern: [\\u0020-\\u00FF]*",
        ),
        (
            "GetKeyPolicy",
            {"KeyId": "k", "PolicyName": "d\u00e9faut"},
            "policyName",
            "satisfy regular expression pattern: [\\w]+",
        ),
        (
            "ReplicateKey",
            {"KeyId": "k", "ReplicaRegion": "us-east-\u0661"},
            "replicaRegion",
            "satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$",
        ),
        (
            "CreateKey",
            {"Tags": [{"TagKey": "", "TagValue": "v"}]},
            "tags.1.member.tagKey",
            "have length greater than or equal to 1",
        ),
    ],
)
def test_constraint_violations_use_aws_wording(
    operation: str, document: Any, path: str, rule: str
) -> None:
    # AWS quotes the offending string or number; never a blob (Plaintext is
    # sensitive too) or a list.
    key_id = document.get("KeyId", "")
    shown = {
        "keyId": key_id[:1024] + ("..." if len(key_id) > 1024 else ""),
        "grantTokens.1.member": "",
        "numberOfBytes": str(document.get("NumberOfBytes")),
        "limit": str(document.get("Limit")),
        "aliasName": document.get("AliasName"),
        "marker": document.get("Marker"),
        "policyName": document.get("PolicyName"),
        "replicaRegion": document.get("ReplicaRegion"),
        "tags.1.member.tagKey": "",
    }.get(path)
    value = "Value" if shown is None else f"Value '{shown}'"
    assert validation(operation, document) == (
        f"1 validation error detected: {value} at '{path}' failed to satisfy constraint: "
        f"Member must {rule}"
    )


def test_nested_required_member_names_its_path() -> None:
    document = {"Tags": [{"TagKey": "k", "TagValue": "v"}, {"TagKey": "k"}]}
    assert validation("CreateKey", document) == (
        "1 validation error detected: Value null at 'tags.2.member.tagValue' "
        "failed to satisfy constraint: Member must not be null"
    )


def test_enum_violation_lists_the_models_values() -> None:
    values = ", ".join(SHAPES["EncryptionAlgorithmSpec"]["enum"])
    message = validation(
        "Encrypt", {"KeyId": "k", "Plaintext": "AA==", "EncryptionAlgorithm": "AES"}
    )
    assert message == (
        "1 validation error detected: Value 'AES' at 'encryptionAlgorithm' failed to satisfy "
        f"constraint: Member must satisfy enum value set: [{values}]"
    )


def test_every_violation_is_collected() -> None:
    document = {
        "KeyId": "",
        "NumberOfBytes": 2000,
        "KeySpec": "AES_512",
        "GrantTokens": [""] * 11,
        "Bogus": 1,
    }
    message = validation("GenerateDataKey", document)
    assert message.startswith("16 validation errors detected: ")
    assert message.count("grantTokens.") == 11
    for fragment in ("'keyId'", "'numberOfBytes'", "'keySpec'", "'grantTokens'", "'Bogus'"):
        assert fragment in message


def test_a_flood_of_violations_is_counted_not_all_listed() -> None:
    document = {"Tags": [{"TagKey": "", "TagValue": ""}] * 500}
    message = validation("CreateKey", document)
    assert message.startswith("500 validation errors detected: ")
    assert message.endswith("; and 475 more")


def test_unknown_member_top_level() -> None:
    message = validation("Encrypt", {"KeyId": "k", "Plaintext": "AA==", "Foo": "x"})
    assert message == "1 validation error detected: Unknown parameter 'Foo' in input"


def test_unknown_member_is_case_sensitive() -> None:
    message = validation("Encrypt", {"keyId": "k", "Plaintext": "AA=="})
    assert "Unknown parameter 'keyId' in input" in message
    assert "Value null at 'keyId'" in message


def test_unknown_member_nested_names_its_path() -> None:
    document = {
        "Tags": [{"TagKey": "a", "TagValue": "b"}, {"TagKey": "a", "TagValue": "b", "Foo": 1}]
    }
    assert validation("CreateKey", document) == (
        "1 validation error detected: Unknown parameter 'Foo' in 'tags.2.member'"
    )
    recipient = {"KeyId": "k", "Recipient": {"AttestationDocument": "AA==", "Nonce": 1}}
    assert "Unknown parameter 'Nonce' in 'recipient'" in validation("GenerateDataKey", recipient)


def test_unknown_member_name_is_truncated() -> None:
    message = validation("ListKeys", {"X" * 10_000: 1})
    assert len(message) < 200


@pytest.mark.parametrize(
    ("operation", "document", "message"),
    [
        (
            "Encrypt",
            {"KeyId": 1, "Plaintext": "AA=="},
            "Value at 'keyId' must be a string, got an integer",
        ),
        (
            "Encrypt",
            {"KeyId": ["k"], "Plaintext": "AA=="},
            "Value at 'keyId' must be a string, got an array",
        ),
        (
            "GenerateRandom",
            {"NumberOfBytes": "32"},
            "Value at 'numberOfBytes' must be an integer, got a string",
        ),
        (
            "GenerateRandom",
            {"NumberOfBytes": 32.0},
            "Value at 'numberOfBytes' must be an integer, got a number",
        ),
        (
            "GenerateRandom",
            {"NumberOfBytes": True},
            "Value at 'numberOfBytes' must be an integer, got a boolean",
        ),
        (
            "GenerateRandom",
            {"NumberOfBytes": 2**40},
            "Value at 'numberOfBytes' does not fit a 32-bit integer",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "DryRun": "true"},
            "Value at 'dryRun' must be a boolean, got a string",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "DryRun": 1},
            "Value at 'dryRun' must be a boolean, got an integer",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": 12},
            "Value at 'plaintext' must be a base64-encoded string, got an integer",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "!!!!"},
            "Value at 'plaintext' is not valid base64",
        ),
        ("Encrypt", {"KeyId": "k", "Plaintext": "QUJ"}, "Value at 'plaintext' is not valid base64"),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "QU JD"},
            "Value at 'plaintext' is not valid base64",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "QUJD\n"},
            "Value at 'plaintext' is not valid base64",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "QUJ\u00e9"},
            "Value at 'plaintext' is not valid base64",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "_-8="},
            "Value at 'plaintext' is not valid base64",
        ),
        (
            "ImportKeyMaterial",
            {
                "KeyId": "k",
                "ImportToken": "AA==",
                "EncryptedKeyMaterial": "AA==",
                "ValidTo": "2030-01-01",
            },
            "Value at 'validTo' must be a number (seconds since the epoch), got a string",
        ),
        (
            "ImportKeyMaterial",
            {"KeyId": "k", "ImportToken": "AA==", "EncryptedKeyMaterial": "AA==", "ValidTo": 1e300},
            "Value at 'validTo' is not a valid timestamp",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "GrantTokens": "t"},
            "Value at 'grantTokens' must be an array, got a string",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "GrantTokens": [None]},
            "Value at 'grantTokens.1.member' must be a string, got null",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "EncryptionContext": []},
            "Value at 'encryptionContext' must be a JSON object, got an array",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "EncryptionContext": {"a": "b", "c": 1}},
            "Value at 'encryptionContext.2.value' must be a string, got an integer",
        ),
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AA==", "EncryptionContext": {"a": None}},
            "Value at 'encryptionContext.1.value' must be a string, got null",
        ),
        (
            "CreateKey",
            {"Tags": [["team", "pay"]]},
            "Value at 'tags.1.member' must be a JSON object, got an array",
        ),
        ("CreateKey", {"Tags": {"TagKey": "a"}}, "Value at 'tags' must be an array, got an object"),
        (
            "GenerateDataKey",
            {"KeyId": "k", "Recipient": "doc"},
            "Value at 'recipient' must be a JSON object, got a string",
        ),
    ],
)
def test_wrong_json_types(operation: str, document: Any, message: str) -> None:
    assert serialization(operation, orjson.dumps(document)) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "Request body must be a JSON object, got an array"),
        (b"42", "Request body must be a JSON object, got an integer"),
        (b"4.5", "Request body must be a JSON object, got a number"),
        (b'"KeyId"', "Request body must be a JSON object, got a string"),
        (b"null", "Request body must be a JSON object, got null"),
        (b"true", "Request body must be a JSON object, got a boolean"),
        (b'{"KeyId": ', "Request body is not valid JSON (line 1, column "),
        (b'{"KeyId": "k",}', "Request body is not valid JSON (line 1, column "),
        (b"   ", "Request body is not valid JSON (line 1, column "),
        (b"NaN", "Request body is not valid JSON (line 1, column "),
        (b'{"KeyId": "\xff\xfe"}', "Request body is not valid UTF-8"),
        (b'{"KeyId": "\xed\xa0\x80"}', "Request body is not valid UTF-8"),
        (b"[" * 100_000, "Request body is nested too deeply"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "Request body is nested too deeply"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    # Only the start is pinned: the column is orjson's to count.
    assert serialization("Encrypt", body).startswith(message)


def test_deep_but_parseable_nesting_is_a_type_error() -> None:
    deep = b'{"GrantTokens": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert serialization("ListKeys", b'{"Limit": ' + b"[" * 1000 + b"]" * 1000 + b"}").startswith(
        "Value at 'limit' must be an integer"
    )
    assert "grantTokens.1.member" in serialization("Encrypt", deep)


def test_unknown_operation() -> None:
    with pytest.raises(UnknownOperationException):
        CODEC.decode("EncryptEverything", b"{}")
    with pytest.raises(UnknownOperationException):
        CODEC.encode("EncryptEverything", None)


def test_messages_quote_values_as_aws_does() -> None:
    message = validation("CreateAlias", {"AliasName": "alias/bad!", "TargetKeyId": "k"})
    assert message == (
        "1 validation error detected: Value 'alias/bad!' at 'aliasName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
    )
    # A long value is cut, so an answer stays small.
    message = validation("Encrypt", {"KeyId": "k" * 2049, "Plaintext": "AA=="})
    assert "k" * 1024 + "..." in message and "k" * 1025 not in message


def test_messages_never_echo_a_sensitive_value() -> None:
    secret_b64 = base64.b64encode(SECRET.encode()).decode()
    hostile = [
        ("Encrypt", {"KeyId": "k", "Plaintext": base64.b64encode(SECRET.encode() * 400).decode()}),
        ("Encrypt", {"KeyId": "k", "Plaintext": SECRET}),
        ("Encrypt", {"KeyId": "k", "Plaintext": secret_b64, "EncryptionContext": {SECRET: 1}}),
        ("Encrypt", {"KeyId": "k", "Plaintext": secret_b64, "GrantTokens": [SECRET] * 11}),
        ("Encrypt", {"KeyId": [SECRET], "Plaintext": secret_b64}),
        (
            "CreateCustomKeyStore",
            {"CustomKeyStoreName": "s", "KeyStorePassword": SECRET[:5]},
        ),
        (
            "CreateCustomKeyStore",
            {
                "CustomKeyStoreName": "s",
                "XksProxyAuthenticationCredential": {
                    "AccessKeyId": SECRET,
                    "RawSecretAccessKey": SECRET + "!",
                },
            },
        ),
    ]
    for operation, document in hostile:
        message = decode_error(operation, orjson.dumps(document))
        assert SECRET not in message
        assert SECRET[:8] not in message
        assert secret_b64 not in message
    body = b'{"KeyId": "' + SECRET.encode() + b'", "Plaintext": "' + SECRET.encode() + b"\xff"
    assert SECRET not in decode_error("Encrypt", body)


# -- encoding errors: programming errors in the service layer --


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"ciphertext_blob": "not bytes", "key_id": "k"}, "ciphertext_blob"),
        ({"ciphertext_blob": b"x", "key_id": b"k"}, "key_id"),
        ({"ciphertext_blob": b"x", "key_id": 7}, "key_id"),
        (
            {"ciphertext_blob": b"x", "encryption_algorithm": IntValued.A},
            "encryption_algorithm",
        ),
    ],
)
def test_encode_rejects_wrong_python_types(result: Mapping[str, Any], field: str) -> None:
    with pytest.raises(TypeError, match=f"Encrypt result field {field}: expected"):
        CODEC.encode("Encrypt", result)


@pytest.mark.parametrize(
    "metadata",
    [
        {"key_id": "k", "enabled": 1},
        {"key_id": "k", "pending_deletion_window_in_days": True},
        {"key_id": "k", "pending_deletion_window_in_days": 7.0},
        {"key_id": "k", "creation_date": datetime(2024, 1, 1)},  # naive on purpose
        {"key_id": "k", "creation_date": 1_700_000_000},
        {"key_id": "k", "encryption_algorithms": "SYMMETRIC_DEFAULT"},
        {"key_id": "k", "encryption_algorithms": b"SYMMETRIC_DEFAULT"},
        {"key_id": "k", "multi_region_configuration": "PRIMARY"},
        {"key_id": "k", "multi_region_configuration": {"primary_key": {"region": 1}}},
        {"key_id": "k", "surprise": "field"},
    ],
)
def test_encode_rejects_wrong_nested_types(metadata: Mapping[str, Any]) -> None:
    with pytest.raises(TypeError, match="DescribeKey result field key_metadata"):
        CODEC.encode("DescribeKey", {"key_metadata": metadata})


def test_encode_type_errors_never_show_the_value() -> None:
    with pytest.raises(TypeError) as caught:
        CODEC.encode("Decrypt", {"plaintext": SECRET})
    assert SECRET not in str(caught.value)
    assert "plaintext" in str(caught.value)


def test_encode_rejects_results_of_the_wrong_kind() -> None:
    for result in (None, "x", 1, [("key_id", "k")], EncryptResult):
        with pytest.raises(TypeError):
            CODEC.encode("Encrypt", result)


def test_encode_rejects_a_value_the_model_has_no_member_for() -> None:
    @dataclasses.dataclass
    class Generated:
        key_id: str
        plaintext: bytes | None
        ciphertext_blob: bytes

    without_plaintext = Generated("k", None, b"c")
    assert parse(
        "GenerateDataKeyWithoutPlaintext",
        CODEC.encode("GenerateDataKeyWithoutPlaintext", without_plaintext),
    ) == {
        "KeyId": "k",
        "CiphertextBlob": b"c",
    }
    with pytest.raises(TypeError, match="no member for field 'plaintext'"):
        CODEC.encode("GenerateDataKeyWithoutPlaintext", Generated("k", b"secret", b"c"))
    with pytest.raises(TypeError, match="no member for key 'plaintext'"):
        CODEC.encode("GenerateDataKeyWithoutPlaintext", {"key_id": "k", "plaintext": b"s"})


def test_encode_reads_properties_and_slots() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Result:
        ciphertext_blob: bytes

        @property
        def key_id(self) -> str:
            return "derived"

    assert orjson.loads(CODEC.encode("Encrypt", Result(b"\x00"))) == {
        "CiphertextBlob": "AA==",
        "KeyId": "derived",
    }


# -- a model the KMS one does not exercise --


def test_codec_handles_long_double_and_recursive_shapes() -> None:
    model = {
        "operations": {"Op": {"input": {"shape": "Node"}, "output": {"shape": "Node"}}},
        "shapes": {
            "Node": {
                "type": "structure",
                "members": {
                    "Count": {"shape": "Long"},
                    "Ratio": {"shape": "Double"},
                    "Child": {"shape": "Node"},
                    "Renamed": {"shape": "Long", "locationName": "wire_name"},
                },
            },
            "Long": {"type": "long"},
            "Double": {"type": "double", "min": 0, "max": 1},
        },
    }
    codec = Codec(model)
    body = b'{"Count": 9007199254740993, "Child": {"Ratio": 0.5, "Child": {"wire_name": 3}}}'
    decoded = codec.decode("Op", body)
    assert decoded == {"count": 2**53 + 1, "child": {"ratio": 0.5, "child": {"renamed": 3}}}
    assert orjson.loads(codec.encode("Op", decoded)) == orjson.loads(body)
    assert "less than or equal to 1" in decode_with(codec, b'{"Child": {"Ratio": 2}}')


def decode_with(codec: Codec, body: bytes) -> str:
    with pytest.raises(ValidationException) as caught:
        codec.decode("Op", body)
    return caught.value.message


def test_codec_refuses_a_model_it_cannot_enforce() -> None:
    shapes: dict[str, Any] = {"In": {"type": "structure", "members": {"D": {"shape": "Doc"}}}}
    with pytest.raises(ValueError, match="document"):
        Codec(
            {
                "operations": {"Op": {"input": {"shape": "In"}}},
                "shapes": {**shapes, "Doc": {"type": "document"}},
            }
        )
    bad_pattern = {
        "In": {"type": "structure", "members": {}},
        "S": {"type": "string", "pattern": "[a-"},
    }
    with pytest.raises(re.error):
        Codec({"operations": {"Op": {"input": {"shape": "In"}}}, "shapes": bad_pattern})


def test_service_limits_narrow_only_their_own_member() -> None:
    """ListAliases' Limit is 1-100 although its shape (shared with ListKeys)
    allows 1000; a model without such a member is compiled as it is."""
    limit = {"type": "integer", "min": 1, "max": 1000}
    model = {
        "operations": {
            "ListAliases": {"input": {"shape": "ListAliasesRequest"}},
            "ListKeys": {"input": {"shape": "ListKeysRequest"}},
        },
        "shapes": {
            "ListAliasesRequest": {"type": "structure", "members": {"Limit": {"shape": "L"}}},
            "ListKeysRequest": {"type": "structure", "members": {"Limit": {"shape": "L"}}},
            "L": limit,
        },
    }
    codec = Codec(model)
    assert codec.decode("ListAliases", b'{"Limit": 100}') == {"limit": 100}
    with pytest.raises(ValidationException, match="less than or equal to 100"):
        codec.decode("ListAliases", b'{"Limit": 101}')
    assert codec.decode("ListKeys", b'{"Limit": 1000}') == {"limit": 1000}
    assert model["shapes"]["L"] == limit  # the caller's model is not changed
    assert ("ListAliasesRequest", "Limit") in SERVICE_LIMITS
    Codec({"operations": {}, "shapes": {"L": limit}})


# -- differential: botocore serializes and parses, the codec must agree --


@pytest.mark.parametrize("variant", [LOW, HIGH, MIXED])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_decode_agrees_with_botocore_serializer(operation: str, variant: int) -> None:
    for seed in range(3):
        params = Sampler(seed, variant, whole_seconds=True).value(input_shape(operation))
        body = serialize(operation, params)
        assert CODEC.decode(operation, body) == snaked(params, input_shape(operation))


@pytest.mark.parametrize("variant", [LOW, HIGH, MIXED])
@pytest.mark.parametrize("operation", OUTPUT_OPERATIONS)
def test_encode_agrees_with_botocore_parser(operation: str, variant: int) -> None:
    shape = output_shape(operation)
    assert shape is not None
    for seed in range(3):
        values = Sampler(seed, variant, whole_seconds=False).value(shape)
        assert parse(operation, CODEC.encode(operation, snaked(values, shape))) == values
        assert parse(operation, CODEC.encode(operation, as_objects(values, shape))) == values
