"""An Azure Key Vault version's conditions on use (its nbf, exp and
key_ops), held by every door: a small document beside the version's own
keycask key (``azure/gate/<key id>``), written with the key's settings
(``azure.gate_write``), and checked by the core's Sign, Verify, and RSA
Encrypt and Decrypt (``handlers/asymmetric.py``, ``handlers/crypto.py``)
once the caller is authorized, so that the AWS door's use of a Key Vault
key is held to them as the Azure door's is. A key with no such document
(most keys) costs one cached lookup."""

from __future__ import annotations

from datetime import datetime

import orjson

from keycask.errors import KMSInvalidStateException
from keycask.keys.keystore import Stored
from keycask.keys.model import Key

# The Key Vault operations each core operation stands for: an RSA key's
# Encrypt is Key Vault's encrypt or wrapKey, its Decrypt decrypt or unwrapKey.
OPERATIONS = {
    "Sign": ("sign",),
    "Verify": ("verify",),
    "Encrypt": ("encrypt", "wrapKey"),
    "Decrypt": ("decrypt", "unwrapKey"),
}


def gate_doc(nbf: float | None, exp: float | None, ops: tuple[str, ...]) -> bytes:
    return orjson.dumps({"nbf": nbf, "exp": exp, "ops": list(ops)})


def check_gate(key: Key, operation: str, now: datetime, stored: Stored[bytes]) -> None:
    """KMSInvalidStateException if ``key`` is an Azure Key Vault version
    that its nbf, exp or key_ops do not let do ``operation`` now."""
    if not stored.revision:
        return
    doc = orjson.loads(stored.value)
    stamp = now.timestamp()
    nbf, exp = doc.get("nbf"), doc.get("exp")
    if nbf is not None and stamp < nbf:
        raise KMSInvalidStateException(
            f"{key.arn} is an Azure Key Vault key version that is not yet valid (its nbf)."
        )
    if exp is not None and stamp >= exp:
        raise KMSInvalidStateException(
            f"{key.arn} is an Azure Key Vault key version that has expired (its exp)."
        )
    ops = doc.get("ops") or ()
    if not any(op in ops for op in OPERATIONS.get(operation, ())):
        raise KMSInvalidStateException(
            f"{key.arn} is an Azure Key Vault key version whose key_ops ({', '.join(ops)}) do "
            f"not allow {operation}."
        )
