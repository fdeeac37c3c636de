"""keycask.arn: one parser and formatter for every ARN."""

from __future__ import annotations

import pytest

from keycask import config
from keycask.arn import Arn


def test_parse_and_format_round_trip() -> None:
    text = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    arn = Arn.parse(text)
    assert (arn.partition, arn.service, arn.region, arn.account) == (
        "aws",
        "kms",
        "eu-west-1",
        "111122223333",
    )
    assert (arn.resource_type, arn.resource_name) == (
        "key",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
    )
    assert str(arn) == text
    # The resource keeps its own colons and slashes.
    odd = Arn.parse("arn:aws:sts::111122223333:assumed-role/app/session:x")
    assert odd.resource == "assumed-role/app/session:x"
    assert odd.resource_name == "app/session:x"


@pytest.mark.parametrize(
    "text", ["", "arn", "arn:aws:kms:r:a", "urn:aws:kms:r:a:key/x", "alias/x", "1234"]
)
def test_not_an_arn(text: str) -> None:
    assert Arn.parse_or_none(text) is None
    with pytest.raises(ValueError, match="is not an ARN"):
        Arn.parse(text)


def test_the_arns_keycask_renders_name_its_partition() -> None:
    assert str(Arn.key("us-east-1", "000000000000", "k")) == (
        "arn:aws:kms:us-east-1:000000000000:key/k"
    )
    assert str(Arn.alias("us-east-1", "000000000000", "alias/a")) == (
        "arn:aws:kms:us-east-1:000000000000:alias/a"
    )
    assert str(Arn.root("000000000000")) == "arn:aws:iam::000000000000:root"
    assert str(Arn.principal("000000000000", "role", "r")) == "arn:aws:iam::000000000000:role/r"
    config.set_partition("aws-cn")
    try:
        assert str(Arn.root("000000000000")) == "arn:aws-cn:iam::000000000000:root"
    finally:
        config.set_partition("aws")
