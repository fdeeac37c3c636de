"""A key-encryption key from a passphrase, with scrypt (RFC 7914).

Here rather than in the passphrase seal because only ``keycask.crypto`` may
import ``cryptography``. scrypt is memory-hard: each guess at the passphrase
costs ``128 * r * n`` bytes of memory, which is what makes offline guessing
on GPUs and ASICs expensive.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keycask.crypto.material import KeyMaterial

KEY_SIZE = 32
# A tampered or mistaken parameter file must not make us allocate the machine
# away: 1 GiB of scrypt memory and ~2^20 work factor are far above any sane KEK.
MAX_MEMORY = 1 << 30
MAX_N = 1 << 22
MAX_P = 16


def check_scrypt_parameters(n: int, r: int, p: int) -> None:
    """Raises ``ValueError`` unless (n, r, p) are valid and within our limits."""
    if n < 2 or n & (n - 1) or n > MAX_N:
        raise ValueError(f"scrypt n must be a power of two in 2..{MAX_N}")
    if r < 1 or not 1 <= p <= MAX_P:
        raise ValueError(f"scrypt needs r >= 1 and 1 <= p <= {MAX_P}")
    if 128 * r * n > MAX_MEMORY:
        raise ValueError(f"scrypt parameters need more than {MAX_MEMORY} bytes of memory")


def scrypt(passphrase: bytes, salt: bytes, *, n: int, r: int, p: int) -> KeyMaterial:
    """The 32-byte key scrypt derives from ``passphrase`` and ``salt``."""
    check_scrypt_parameters(n, r, p)
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p)
    return KeyMaterial(kdf.derive(passphrase))
