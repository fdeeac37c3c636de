"""docs/workload-identity.md shows trust policies and settings people copy:
each trust policy must parse as keycask parses one, name the provider its
section registers, and the refusal table must use STS's own codes."""

from __future__ import annotations

import re
from pathlib import Path

from botocore.loaders import Loader

from keycask.policy.document import parse_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "workload-identity.md"


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", DOC.read_text(), flags=re.M)
    return {part.split("\n", 1)[0]: part for part in parts[1:]}


def test_every_trust_policy_parses_and_names_the_provider_its_section_registers() -> None:
    checked = 0
    for title, body in _sections().items():
        issuers = re.findall(r"identity-providers create --issuer (https://\S+)", body)
        for block in re.findall(r"^```json\n(.*?)^```", body, re.S | re.M):
            policy = parse_policy(block, kind="trust")
            federated = [p for s in policy.statements if s.principal for p in s.principal.federated]
            hosts = {issuer.removeprefix("https://") for issuer in issuers}
            assert federated and all(f.split("oidc-provider/", 1)[1] in hosts for f in federated), (
                title
            )
            # Conditions name the same provider's claims.
            keys = {c.key for s in policy.statements for c in s.conditions}
            assert keys and all(k.rsplit(":", 1)[0] in hosts for k in keys), title
            checked += 1
    assert checked == 2


def test_the_refusal_table_uses_sts_codes() -> None:
    model = Loader().load_service_model("sts", "service-2")
    codes = {s["error"]["code"] for s in model["shapes"].values() if s.get("exception")}
    # STS's common errors, which the model does not list per operation.
    codes |= {"AccessDenied", "ValidationError", "InvalidClientTokenId"}
    table = _sections()["What is refused"]
    # The answer is the last cell of each row: `Code`, maybe with a note.
    named = re.findall(r"\| `([A-Za-z]+)`[^|`]*(?:`[A-Za-z]+`[^|]*)?\|\s*$", table, re.M)
    assert len(named) == 11  # every row
    for code in named:
        assert code in codes, code
