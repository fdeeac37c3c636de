"""GetKeyRotationStatus on a key with imported material, in every state it
goes through (keycask's choice, documented in service/rotation.py).

AWS's key state table of 2020 answered UnsupportedOperationException ("origin
is EXTERNAL which is not valid for this operation") for such keys, from when
imported material could not rotate at all. Since imported keys rotate on
demand (import NEW_KEY_MATERIAL, then RotateKeyOnDemand), AWS documents
GetKeyRotationStatus as the status of automatic *and* on-demand rotation, and
the status of keys that cannot rotate automatically as "always false". So
keycask answers for EXTERNAL keys in every state, PendingImport included:
KeyRotationEnabled false, no period, no next date.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import Server


def _import(kms: Any, key_id: str, material: bytes, **kwargs: Any) -> None:
    params = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    kms.import_key_material(
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=public.encrypt(material, oaep),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        **kwargs,
    )


def _status(kms: Any, key_id: str) -> dict[str, Any]:
    out = kms.get_key_rotation_status(KeyId=key_id)
    out.pop("ResponseMetadata")
    return dict(out)


def test_rotation_status_of_an_imported_key_in_every_state(server: Server) -> None:
    kms = server.client()
    meta = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    off = {"KeyRotationEnabled": False, "KeyId": arn}

    def state() -> str:
        return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])

    assert state() == "PendingImport"
    assert _status(kms, key_id) == off
    # Automatic rotation stays refused for its origin, whatever the state.
    with pytest.raises(ClientError) as error:
        kms.enable_key_rotation(KeyId=key_id)
    assert error.value.response["Error"]["Code"] == "UnsupportedOperationException"

    _import(kms, key_id, os.urandom(32))
    assert state() == "Enabled"
    assert _status(kms, key_id) == off
    # An on-demand rotation does not turn automatic rotation on.
    _import(kms, key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL")
    kms.rotate_key_on_demand(KeyId=key_id)
    assert _status(kms, key_id) == off
    assert [r["RotationType"] for r in kms.list_key_rotations(KeyId=key_id)["Rotations"]] == [
        "ON_DEMAND"
    ]
    kms.disable_key(KeyId=key_id)
    assert _status(kms, key_id) == off
    kms.enable_key(KeyId=key_id)
    # Without its current material the key is PendingImport again: still
    # answered, so a client can tell it has rotated and may rotate again.
    kms.delete_imported_key_material(KeyId=key_id)
    assert state() == "PendingImport"
    assert _status(kms, key_id) == off
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert _status(kms, key_id) == off
