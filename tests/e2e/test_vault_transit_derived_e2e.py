"""The Vault Transit door's derived keys (``context``), verify's versions,
Vault's answers for policy refusals and token renewal, and batch limits,
driven by hvac 2.3.0 against a real server (docs/vault-transit.md)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import hvac
import hvac.exceptions
import pytest
from tests.conftest import Server
from tests.e2e.test_vault_transit_e2e import (
    _admin_token,
    _b64,
    _client,
    _raw,
    _records,
    _token,
    _user,
)

from keycask.errors import ValidationException
from keycask.service.core import transit
from keycask.service.core.call import Call
from keycask.service.doors import vault_codec

_MISSING = "missing 'context' for key derivation"
_VAULT_DENIED = {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}


@pytest.fixture(scope="module")
def vault(server: Server) -> hvac.Client:
    return _client(server, _admin_token(server))


def _name() -> str:
    return f"d{uuid.uuid4().hex[:8]}"


def test_a_derived_key_needs_its_context_and_binds_it(vault: hvac.Client) -> None:
    name = _name()
    t = vault.secrets.transit
    t.create_key(name, derived=True)
    info = t.read_key(name)["data"]
    assert info["derived"] is True and info["supports_derivation"] is True
    one, two = _b64(b"tenant-1"), _b64(b"tenant-2")
    with pytest.raises(hvac.exceptions.InvalidRequest, match=_MISSING):
        t.encrypt_data(name, _b64(b"secret"))
    text = t.encrypt_data(name, _b64(b"secret"), context=one)["data"]["ciphertext"]
    assert t.decrypt_data(name, text, context=one)["data"]["plaintext"] == _b64(b"secret")
    # Another context never opens it; none is refused before anything is opened.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unable to decrypt"):
        t.decrypt_data(name, text, context=two)
    with pytest.raises(hvac.exceptions.InvalidRequest, match=_MISSING):
        t.decrypt_data(name, text)
    # associated_data and context are two distinct pairs: both must match.
    both = t.encrypt_data(name, _b64(b"x"), context=one, associated_data=one)["data"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unable to decrypt"):
        t.decrypt_data(name, both["ciphertext"], context=one)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unable to decrypt"):
        t.decrypt_data(name, both["ciphertext"], context=one, associated_data=two)
    assert t.decrypt_data(name, both["ciphertext"], context=one, associated_data=one)
    # The same bytes in another base64 spelling (unused trailing bits set)
    # are the same context: the context is bound as canonical base64.
    assert one == "dGVuYW50LTE="
    opened = t.decrypt_data(name, text, context="dGVuYW50LTF=")["data"]["plaintext"]
    assert opened == _b64(b"secret")
    # rewrap and datakey take the context too.
    t.rotate_key(name)
    moved = t.rewrap_data(name, text, context=one)["data"]["ciphertext"]
    assert moved.startswith("vault:v2:")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unable to decrypt"):
        t.decrypt_data(name, moved, context=two)
    with pytest.raises(hvac.exceptions.InvalidRequest, match=_MISSING):
        t.rewrap_data(name, text)
    made = t.generate_data_key(name, "plaintext", context=two)["data"]
    opened = t.decrypt_data(name, made["ciphertext"], context=two)["data"]["plaintext"]
    assert opened == made["plaintext"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match=_MISSING):
        t.generate_data_key(name, "wrapped")
    # In a batch, an item without a context is that item's error.
    batch = t.encrypt_data(
        name, "", batch_input=[{"plaintext": _b64(b"a"), "context": one}, {"plaintext": _b64(b"b")}]
    )["data"]["batch_results"]
    assert batch[0]["ciphertext"].startswith("vault:v2:")
    assert _MISSING in batch[1]["error"]


def test_context_convergence_and_derivation_elsewhere_are_refused(vault: hvac.Client) -> None:
    t = vault.secrets.transit
    plain = _name()
    t.create_key(plain)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="only for derived keys"):
        t.encrypt_data(plain, _b64(b"m"), context=_b64(b"c"))
    text = t.encrypt_data(plain, _b64(b"m"))["data"]["ciphertext"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="only for derived keys"):
        t.decrypt_data(plain, text, context=_b64(b"c"))
    with pytest.raises(hvac.exceptions.InvalidRequest, match="convergent encryption"):
        t.create_key(_name(), derived=True, convergent_encryption=True)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="convergent encryption"):
        t.encrypt_data(plain, _b64(b"m"), nonce=_b64(b"n" * 12))
    with pytest.raises(hvac.exceptions.InvalidRequest, match="derived is not supported"):
        t.create_key(_name(), derived=True, key_type="ecdsa-p256")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="base64-decode context"):
        t.encrypt_data(plain, _b64(b"m"), context="not base64!")
    # A key that exists is not made derived by asking again.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="not derived"):
        t.create_key(plain, derived=True)


def test_policies_see_the_context_as_encryption_context(server: Server, vault: hvac.Client) -> None:
    name = _name()
    vault.secrets.transit.create_key(name, derived=True)
    mine = _b64(b"tenant-a")
    condition = {"StringEquals": {"kms:EncryptionContext:vault-transit:context": mine}}
    allow = {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
             "Condition": condition}  # fmt: skip
    tenant = _client(
        server,
        _token(server, _user(server, {"Version": "2012-10-17", "Statement": [allow]}))["Token"],
    )
    t = tenant.secrets.transit
    text = t.encrypt_data(name, _b64(b"a's"), context=mine)["data"]["ciphertext"]
    assert t.decrypt_data(name, text, context=mine)["data"]["plaintext"] == _b64(b"a's")
    with pytest.raises(hvac.exceptions.Forbidden):
        t.encrypt_data(name, _b64(b"b's"), context=_b64(b"tenant-b"))


def test_verify_names_the_version_as_vault_does(vault: hvac.Client) -> None:
    t = vault.secrets.transit
    name = _name()
    vault.adapter.post(f"/v1/transit/keys/{name}", json={"type": "hmac"})
    mac = t.generate_hmac(name, _b64(b"m"))["data"]["hmac"]
    assert mac.startswith("vault:v1:")
    assert t.verify_signed_data(name, _b64(b"m"), hmac=mac)["data"]["valid"] is True
    too_new = mac.replace("vault:v1:", "vault:v2:")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid HMAC: version is too new"):
        t.verify_signed_data(name, _b64(b"m"), hmac=too_new)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="bad version"):
        t.verify_signed_data(name, _b64(b"m"), hmac=mac.replace("vault:v1:", "vault:v0:"))
    signer = _name()
    t.create_key(signer, key_type="ed25519")
    signature = t.sign_data(signer, _b64(b"m"))["data"]["signature"]
    assert t.verify_signed_data(signer, _b64(b"m"), signature=signature)["data"]["valid"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="signature: version is too new"):
        t.verify_signed_data(
            signer, _b64(b"m"), signature=signature.replace("vault:v1:", "vault:v3:")
        )


def test_a_policy_refusal_is_vaults_body_and_the_audit_keeps_the_reason(
    server: Server, vault: hvac.Client
) -> None:
    name = _name()
    vault.secrets.transit.create_key(name)
    nobody = _token(server, _user(server))["Token"]
    reply = _raw(server, "POST", f"/v1/transit/encrypt/{name}", nobody, {"plaintext": "aGk="})
    assert reply.status_code == 403
    assert reply.json() == _VAULT_DENIED
    with pytest.raises(hvac.exceptions.Forbidden):
        _client(server, nobody).secrets.transit.encrypt_data(name, "aGk=")
    request_id = reply.headers["x-amzn-requestid"]
    [record] = [r for r in _records(server) if r["request_id"] == request_id]
    assert record["operation"] == "VaultTransit.Encrypt" and record["outcome"] != "success"
    assert record["error_code"] == "AccessDeniedException" and record["decision"] == "deny"
    assert record["decided_by"] == "implicit deny" and record["key_arn"].endswith(
        vault.secrets.transit.read_key(name)["data"]["keycask_key_arn"][-36:]
    )


def test_renew_self_answers_as_for_a_token_that_is_not_renewable(server: Server) -> None:
    token = _token(server, _user(server), "--ttl", "2h")["Token"]
    client = _client(server, token)
    looked = client.auth.token.lookup_self()["data"]
    assert looked["renewable"] is False and looked["policies"] == ["default"]
    assert 7000 < looked["ttl"] <= 7200 and looked["expire_time"].endswith("Z")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="lease is not renewable"):
        client.auth.token.renew_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        _client(server, "kct.nope").auth.token.renew_self()


def test_a_batch_over_the_cap_is_refused_whole(server: Server, vault: hvac.Client) -> None:
    name = _name()
    vault.secrets.transit.create_key(name)
    items = [{"plaintext": "MQ=="}] * (vault_codec.MAX_BATCH + 1)
    reply = _raw(server, "POST", f"/v1/transit/encrypt/{name}", vault.token, {"batch_input": items})
    assert reply.status_code == 400
    assert reply.json() == {"errors": [f"batch_input holds at most {vault_codec.MAX_BATCH} items"]}
    items = [{"plaintext": "MQ=="}] * vault_codec.MAX_BATCH
    reply = _raw(server, "POST", f"/v1/transit/encrypt/{name}", vault.token, {"batch_input": items})
    assert reply.status_code == 200
    assert len(reply.json()["data"]["batch_results"]) == vault_codec.MAX_BATCH


def test_a_long_batch_yields_to_the_event_loop() -> None:
    async def run() -> list[str]:
        seen: list[str] = []

        async def answer(item: int) -> dict[str, int]:
            seen.append("item")
            return {"n": item}

        async def other() -> None:
            seen.append("other")

        items: list[int | ValidationException] = list(range(1000))
        task = asyncio.ensure_future(other())
        call = Call(request_id="r", time=datetime.now(UTC), source_ip=None)
        out = await transit.each_item(call, items, True, answer)
        await task
        assert len(out.result.items) == 1000  # type: ignore[union-attr]
        return seen

    seen = asyncio.run(run())
    # The other task ran between items, not after the whole batch.
    assert 0 < seen.index("other") < 100
