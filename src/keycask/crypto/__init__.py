"""The only package that touches ``cryptography``: recipes, not knobs.

Callers never pass a nonce, a mode or a tag length. Every secret travels as a
``KeyMaterial`` so it cannot be printed or compared by accident.
"""

from keycask.crypto.aead import NONCE_SIZE, AuthenticationFailed, open_sealed, seal
from keycask.crypto.asymmetric import (
    DATA_KEY_PAIR_SPECS,
    KEY_SPECS,
    DecryptFailed,
    InvalidPublicKey,
    PrivateKey,
    encapsulation_algorithms,
    encrypt_with_public_key,
    encryption_algorithms,
    generate_data_key_pair,
    generate_private_key,
    key_agreement_algorithms,
    signing_algorithms,
    verify_with_public_key,
)
from keycask.crypto.jwk import (
    JWK_CURVES,
    JWK_SPECS,
    InvalidJwk,
    jwk_key_type,
    private_key_from_jwk,
    public_jwk,
)
from keycask.crypto.mac import (
    HMAC_SPECS,
    generate_hmac_key,
    generate_mac,
    hmac_digest,
    mac_algorithms,
    verify_mac,
)
from keycask.crypto.material import KeyMaterial, random_bytes
from keycask.crypto.message import (
    MESSAGE_OVERHEAD,
    MESSAGE_SALT_SIZE,
    open_message,
    seal_message,
)
from keycask.crypto.mlkem import CiphertextLengthInvalid
from keycask.crypto.passphrase import scrypt
from keycask.crypto.shamir import Share
from keycask.crypto.shamir import combine as combine_shares
from keycask.crypto.shamir import split as split_secret
from keycask.crypto.sharebox import (
    ShareBoxError,
    check_public_key,
    open_with_private_key,
    seal_to_public_key,
)
from keycask.crypto.wrapping import (
    WRAPPING_ALGORITHMS,
    WRAPPING_KEY_SPECS,
    UnwrapFailed,
    WrappingKey,
    generate_wrapping_key,
    key_material_id,
    unwrap_key_material,
)
from keycask.crypto.x509 import (
    certificate_problem,
    is_pem_certificate,
    self_signed_certificate,
)

__all__ = [
    "DATA_KEY_PAIR_SPECS",
    "HMAC_SPECS",
    "JWK_CURVES",
    "JWK_SPECS",
    "KEY_SPECS",
    "MESSAGE_OVERHEAD",
    "MESSAGE_SALT_SIZE",
    "NONCE_SIZE",
    "WRAPPING_ALGORITHMS",
    "WRAPPING_KEY_SPECS",
    "AuthenticationFailed",
    "CiphertextLengthInvalid",
    "DecryptFailed",
    "InvalidJwk",
    "InvalidPublicKey",
    "KeyMaterial",
    "PrivateKey",
    "Share",
    "ShareBoxError",
    "UnwrapFailed",
    "WrappingKey",
    "certificate_problem",
    "check_public_key",
    "combine_shares",
    "encapsulation_algorithms",
    "encrypt_with_public_key",
    "encryption_algorithms",
    "generate_data_key_pair",
    "generate_hmac_key",
    "generate_mac",
    "generate_private_key",
    "generate_wrapping_key",
    "hmac_digest",
    "is_pem_certificate",
    "jwk_key_type",
    "key_agreement_algorithms",
    "key_material_id",
    "mac_algorithms",
    "open_message",
    "open_sealed",
    "open_with_private_key",
    "private_key_from_jwk",
    "public_jwk",
    "random_bytes",
    "scrypt",
    "seal",
    "seal_message",
    "seal_to_public_key",
    "self_signed_certificate",
    "signing_algorithms",
    "split_secret",
    "unwrap_key_material",
    "verify_mac",
    "verify_with_public_key",
]
