"""A data dir written by keycask's first release keeps working.

The first release stored key documents without versions, rotation or
deletion fields. This test writes such a store with keycask's own barrier
(exactly the document the first release wrote), seals a ciphertext the way
it did, then starts today's server on it: the key describes, its ciphertext
decrypts, and it rotates, after which both old and new ciphertexts decrypt.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from conftest import Server
from keycask import config
from keycask.app import open_store
from keycask.crypto import KeyMaterial
from keycask.keys.model import default_key_policy
from keycask.keys.wire import BlobHeader, encode_context, seal_blob

ACCOUNT = "000000000000"
REGION = "us-east-1"


async def _write_first_format(data_dir: Path, key_id: uuid.UUID) -> bytes:
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    try:
        material = KeyMaterial.generate(32)
        doc = {
            "key_id": str(key_id),
            "account": ACCOUNT,
            "region": REGION,
            "created": datetime.now(UTC).timestamp(),
            "description": "from the first release",
            "state": "Enabled",
            "policy": default_key_policy(ACCOUNT),
            "key_usage": "ENCRYPT_DECRYPT",
            "key_spec": "SYMMETRIC_DEFAULT",
            "origin": "AWS_KMS",
            "current_version": 1,
            "tags": [],
        }
        await barrier.commit(
            [
                barrier.put(f"key/{key_id}", orjson.dumps(doc), expect=0),
                barrier.put(f"mat/{key_id}/{1:010d}", material.reveal(), expect=0),
                barrier.put(f"idx/key/{ACCOUNT}/{REGION}/{key_id}", b"", expect=0),
            ]
        )
        context = {"release": "first"}
        return seal_blob(
            material, BlobHeader(key_id, 1), b"written long ago", encode_context(context)
        )
    finally:
        await storage.close()


def test_first_format_keys_still_work(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key_id = uuid.uuid4()
    blob = asyncio.run(_write_first_format(data_dir, key_id))
    server = Server(data_dir).start()
    try:
        kms: Any = server.client()
        meta = kms.describe_key(KeyId=str(key_id))["KeyMetadata"]
        assert meta["KeyState"] == "Enabled"
        assert len(meta["CurrentKeyMaterialId"]) == 64
        context = {"release": "first"}
        answer = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
        assert answer["Plaintext"] == b"written long ago"
        assert answer["KeyMaterialId"] == meta["CurrentKeyMaterialId"]
        kms.rotate_key_on_demand(KeyId=str(key_id))
        new_blob = kms.encrypt(KeyId=str(key_id), Plaintext=b"new")["CiphertextBlob"]
        assert int.from_bytes(new_blob[17:21], "big") == 2
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == (
            b"written long ago"
        )
        assert kms.decrypt(CiphertextBlob=new_blob)["Plaintext"] == b"new"
        rotations = kms.list_key_rotations(KeyId=str(key_id), IncludeKeyMaterial="ALL_KEY_MATERIAL")
        assert [r["KeyMaterialState"] for r in rotations["Rotations"]] == ["NON_CURRENT", "CURRENT"]
    finally:
        server.stop()
