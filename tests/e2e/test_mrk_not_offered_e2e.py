"""Until issue 22's operations land, multi-Region keys are not offered: the
model, paths and keystore helpers exist (piece A), but CreateKey with
MultiRegion still answers UnsupportedOperationException and makes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError


def _key_ids(kms: Any) -> set[str]:
    pages = kms.get_paginator("list_keys").paginate()
    return {k["KeyId"] for page in pages for k in page["Keys"]}


def test_create_key_multi_region_is_unsupported_and_makes_nothing(kms: Any) -> None:
    before = _key_ids(kms)
    with pytest.raises(ClientError) as caught:
        kms.create_key(MultiRegion=True, Description="not yet")
    assert caught.value.response["Error"]["Code"] == "UnsupportedOperationException"
    after = _key_ids(kms)
    assert after == before
    assert not any(key_id.startswith("mrk-") for key_id in after)
    # A single-Region key is still made, and shows a UUID.
    made = kms.create_key(MultiRegion=False)["KeyMetadata"]
    assert made["MultiRegion"] is False
    assert not made["KeyId"].startswith("mrk-")
    assert made["Arn"].endswith("key/" + made["KeyId"])
