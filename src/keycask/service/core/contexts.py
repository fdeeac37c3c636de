"""What an encryption context must be for keycask to bind it into something new.

Applied when a request would make a ciphertext or a grant carry the context
(Encrypt, GenerateDataKey*, GenerateDataKeyPair*, ReEncrypt's destination,
CreateGrant's constraints), as the request is built, before anything is
authorized or logged:

* At most ``MAX_CONTEXT_PAIRS`` pairs, and a canonical encoding
  (``keys/wire.py``: 2 bytes of count, then 2-byte lengths before each key
  and value) of at most ``MAX_CONTEXT_BYTES``. AWS's KMS documentation gives
  no size for an encryption context (not on the encryption context page,
  the API reference or the quotas pages); the largest AWS client, the AWS
  Encryption SDK, stores the context it sends to KMS in its message header
  with a 2-byte length, so no context over 65,535 bytes in that same
  encoding reaches AWS KMS from it. Every pair count below 256 fits within
  what we have seen any AWS service or SDK send (a handful of pairs).
* No two keys that differ only in case. AWS's contexts are case-sensitive,
  but condition keys (``kms:EncryptionContext:tenant``) and grant
  constraints name context keys without regard to case, so
  ``{"tenant": "b", "TENANT": "a"}`` would be read as either tenant. Grant
  constraints already refuse this (``authz.fold_context``); new contexts do
  too.

Decrypt and ReEncrypt's source context are *not* checked: a ciphertext made
before these rules with such a context must stay decryptable. For them the
audit record is bounded (``audit/record.py``) and policy evaluation treats a
case-ambiguous key as failing closed (``policy/conditions.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from keycask.errors import ValidationException

MAX_CONTEXT_PAIRS = 256
MAX_CONTEXT_BYTES = 65_535


def check_new_context(member: str, context: Mapping[str, str] | None) -> None:
    """Raise ValidationException if ``context`` may not be bound into a new
    ciphertext or grant. O(pairs), and two comparisons for the usual
    one-pair context."""
    if not context:
        return
    count = len(context)
    if count > MAX_CONTEXT_PAIRS:
        raise ValidationException(
            f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
            f"Map must have at most {MAX_CONTEXT_PAIRS} entries"
        )
    # The lengths inline and the case check as one set: ~0.77 -> ~0.45 us
    # for a 3-pair context (thread_time), on every Encrypt and GenerateDataKey.
    size = 2 + 4 * count
    for name, value in context.items():
        size += len(name) if name.isascii() else _utf8_length(name)
        size += len(value) if value.isascii() else _utf8_length(value)
    if size > MAX_CONTEXT_BYTES:
        raise ValidationException(
            f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
            f"the encryption context must encode in at most {MAX_CONTEXT_BYTES} bytes "
            f"(this one needs {size})"
        )
    # Two keys with the same lower case: what fold_context (grant constraints) refuses.
    if count > 1 and len({name.lower() for name in context}) != count:
        raise ValidationException(
            f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
            "encryption context keys must not differ only by case (policy conditions and "
            "grant constraints compare them without case)"
        )


def _utf8_length(text: str) -> int:
    # "surrogatepass": a count must never raise, whatever the JSON held.
    return len(text.encode("utf-8", "surrogatepass"))
