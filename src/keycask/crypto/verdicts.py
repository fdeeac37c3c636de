"""The exceptions ``cryptography`` raises when a tag or a signature does not
verify, for callers above this package that must tell "this data failed
authentication" from every other failure without importing ``cryptography``
themselves: the AWS Encryption SDK lets both through unwrapped when a
message's frame or signature has been altered."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag

AUTHENTICATION_FAILURES: tuple[type[Exception], ...] = (InvalidTag, InvalidSignature)
