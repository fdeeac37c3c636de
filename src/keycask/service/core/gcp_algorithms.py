"""Cloud KMS's algorithms that keycask's key specs cover, by purpose: the
keycask key each makes (KeySpec, KeyUsage), and the AWS KMS algorithm each
operation runs with (docs/gcp-kms.md, "Algorithms").

A signing algorithm also names the digest it takes (``asymmetricSign``'s
``digest.sha256`` ...; the external mu digest for ML-DSA's EXTERNAL_MU);
EC_SIGN_ED25519 and the pure ML-DSA algorithms sign data only, as in
Cloud KMS. Cloud KMS algorithms AWS KMS has no counterpart for
(RSA_SIGN_RAW_PKCS1_*, RSA_DECRYPT_OAEP_4096_SHA512, HMAC_SHA1, SLH-DSA,
the KEM and AES_* raw purposes, ...) are refused at create with
INVALID_ARGUMENT and the list of those served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from keycask.keys.model import KeySpec, KeyUsage
from keycask.service.core.gcp_requests import SYMMETRIC

# Cloud KMS algorithm -> (key spec, AWS signing algorithm, digest field).
SIGNING: Final[Mapping[str, tuple[KeySpec, str, str | None]]] = {
    "EC_SIGN_P256_SHA256": (KeySpec.ECC_NIST_P256, "ECDSA_SHA_256", "sha256"),
    "EC_SIGN_P384_SHA384": (KeySpec.ECC_NIST_P384, "ECDSA_SHA_384", "sha384"),
    "EC_SIGN_SECP256K1_SHA256": (KeySpec.ECC_SECG_P256K1, "ECDSA_SHA_256", "sha256"),
    "EC_SIGN_ED25519": (KeySpec.ECC_NIST_EDWARDS25519, "ED25519_SHA_512", None),
    "RSA_SIGN_PSS_2048_SHA256": (KeySpec.RSA_2048, "RSASSA_PSS_SHA_256", "sha256"),
    "RSA_SIGN_PSS_3072_SHA256": (KeySpec.RSA_3072, "RSASSA_PSS_SHA_256", "sha256"),
    "RSA_SIGN_PSS_4096_SHA256": (KeySpec.RSA_4096, "RSASSA_PSS_SHA_256", "sha256"),
    "RSA_SIGN_PSS_4096_SHA512": (KeySpec.RSA_4096, "RSASSA_PSS_SHA_512", "sha512"),
    "RSA_SIGN_PKCS1_2048_SHA256": (KeySpec.RSA_2048, "RSASSA_PKCS1_V1_5_SHA_256", "sha256"),
    "RSA_SIGN_PKCS1_3072_SHA256": (KeySpec.RSA_3072, "RSASSA_PKCS1_V1_5_SHA_256", "sha256"),
    "RSA_SIGN_PKCS1_4096_SHA256": (KeySpec.RSA_4096, "RSASSA_PKCS1_V1_5_SHA_256", "sha256"),
    "RSA_SIGN_PKCS1_4096_SHA512": (KeySpec.RSA_4096, "RSASSA_PKCS1_V1_5_SHA_512", "sha512"),
    # Pure ML-DSA of the data (empty context), or of a 64-byte external mu.
    "PQ_SIGN_ML_DSA_44": (KeySpec.ML_DSA_44, "ML_DSA_SHAKE_256", None),
    "PQ_SIGN_ML_DSA_65": (KeySpec.ML_DSA_65, "ML_DSA_SHAKE_256", None),
    "PQ_SIGN_ML_DSA_87": (KeySpec.ML_DSA_87, "ML_DSA_SHAKE_256", None),
    "PQ_SIGN_ML_DSA_44_EXTERNAL_MU": (KeySpec.ML_DSA_44, "ML_DSA_SHAKE_256", "externalMu"),
    "PQ_SIGN_ML_DSA_65_EXTERNAL_MU": (KeySpec.ML_DSA_65, "ML_DSA_SHAKE_256", "externalMu"),
    "PQ_SIGN_ML_DSA_87_EXTERNAL_MU": (KeySpec.ML_DSA_87, "ML_DSA_SHAKE_256", "externalMu"),
}
# An ML-DSA public key's raw size (FIPS 204): its NIST_PQC format is the
# SubjectPublicKeyInfo's last bytes.
RAW_PUBLIC_KEY: Final[Mapping[KeySpec, int]] = {
    KeySpec.ML_DSA_44: 1312,
    KeySpec.ML_DSA_65: 1952,
    KeySpec.ML_DSA_87: 2592,
}
# Cloud KMS algorithm -> (key spec, AWS encryption algorithm).
DECRYPTION: Final[Mapping[str, tuple[KeySpec, str]]] = {
    "RSA_DECRYPT_OAEP_2048_SHA256": (KeySpec.RSA_2048, "RSAES_OAEP_SHA_256"),
    "RSA_DECRYPT_OAEP_3072_SHA256": (KeySpec.RSA_3072, "RSAES_OAEP_SHA_256"),
    "RSA_DECRYPT_OAEP_4096_SHA256": (KeySpec.RSA_4096, "RSAES_OAEP_SHA_256"),
    "RSA_DECRYPT_OAEP_2048_SHA1": (KeySpec.RSA_2048, "RSAES_OAEP_SHA_1"),
    "RSA_DECRYPT_OAEP_3072_SHA1": (KeySpec.RSA_3072, "RSAES_OAEP_SHA_1"),
    "RSA_DECRYPT_OAEP_4096_SHA1": (KeySpec.RSA_4096, "RSAES_OAEP_SHA_1"),
}
# Cloud KMS algorithm -> (key spec, AWS MAC algorithm).
MACS: Final[Mapping[str, tuple[KeySpec, str]]] = {
    "HMAC_SHA224": (KeySpec.HMAC_224, "HMAC_SHA_224"),
    "HMAC_SHA256": (KeySpec.HMAC_256, "HMAC_SHA_256"),
    "HMAC_SHA384": (KeySpec.HMAC_384, "HMAC_SHA_384"),
    "HMAC_SHA512": (KeySpec.HMAC_512, "HMAC_SHA_512"),
}
# Purpose -> algorithm -> the keycask key it makes.
KINDS: Final[Mapping[str, Mapping[str, tuple[KeySpec, KeyUsage]]]] = {
    "ENCRYPT_DECRYPT": {SYMMETRIC: (KeySpec.SYMMETRIC_DEFAULT, KeyUsage.ENCRYPT_DECRYPT)},
    "ASYMMETRIC_SIGN": {a: (s, KeyUsage.SIGN_VERIFY) for a, (s, _, _) in SIGNING.items()},
    "ASYMMETRIC_DECRYPT": {a: (s, KeyUsage.ENCRYPT_DECRYPT) for a, (s, _) in DECRYPTION.items()},
    "MAC": {a: (s, KeyUsage.GENERATE_VERIFY_MAC) for a, (s, _) in MACS.items()},
}
