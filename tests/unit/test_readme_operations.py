"""The README's "What works today" table names exactly the operations of
botocore's KMS model that keycask does not serve: a new operation in the
model, or one keycask starts serving, makes this fail until the README says so."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session

from keycask.service.core.operations import OPERATIONS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_names_every_unsupported_operation() -> None:
    (row,) = [line for line in README.read_text().splitlines() if line.startswith("| Operations |")]
    named = set(re.findall(r"\b[A-Z][A-Za-z]+\b", row))
    model = set(botocore.session.get_session().get_service_model("kms").operation_names)
    unsupported = model - set(OPERATIONS)
    assert unsupported == named & model, (
        f"README's Operations row names {sorted(named & model)}; unsupported: {sorted(unsupported)}"
    )
