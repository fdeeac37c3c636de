"""Shamir secret sharing over GF(2^8), for splitting a root key among operators.

Hand-written: no library in our dependency set does this well (``cryptography``
has no secret sharing; the PyPI packages we looked at index log/exp tables by
secret bytes or work over prime fields with awkward encodings). Each byte of the
secret is the constant term of its own random polynomial of degree
``threshold - 1``; share ``i`` holds every polynomial evaluated at ``x = i``.

Field: GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11B).

Side channels, honestly: multiplication is shift-and-conditional-xor where the
"condition" is a mask (``bit * 0xFF``), so there are no branches on, and no
table lookups indexed by, secret bytes; inversion is exponentiation (a^254)
with a fixed square-and-multiply sequence. The arithmetic runs on all bytes of
a value at once, packed into one Python int (8 bits per lane). Python cannot
promise constant time: big-int operations take time that depends on the
magnitude of their operands, and the interpreter does its own allocation. So
this avoids the classic data-dependent branches and indexing, and no more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from keycask.crypto.material import KeyMaterial, random_bytes

MAX_SHARES = 255  # x coordinates are the nonzero field elements
_PREFIX = "kcs1"
_CHECKSUM_HEX = 8  # 4 bytes of SHA-256: a typo slips through with odds 2^-32
_AES_KEY_SIZES = (16, 24, 32)


# -- GF(2^8) on packed lanes ------------------------------------------------------


def _ones(size: int) -> int:
    """0x0101...01 over ``size`` lanes: broadcasts a byte, selects lane bit 0."""
    return int.from_bytes(b"\x01" * size, "big")


def _vmul(a: int, b: int, ones: int) -> int:
    """Lane-wise GF(2^8) product of two packed byte vectors.

    Eight rounds whatever the operands: add ``a`` where ``b``'s low bit is set
    (the mask ``bit * 0xFF`` replaces a branch), then multiply ``a`` by x and
    reduce by 0x1B where its top bit fell out (a mask again). Shifting ``b``
    right leaks bits into the lane below, but only into bits 1..7, which the
    ``& ones`` never reads.
    """
    low7 = ones * 0x7F
    product = 0
    for _ in range(8):
        product ^= ((b & ones) * 0xFF) & a
        a = ((a & low7) << 1) ^ (((a >> 7) & ones) * 0x1B)
        b >>= 1
    return product


def gf_mul(a: int, b: int) -> int:
    """Product of two field elements (0..255)."""
    return _vmul(a, b, 1)


def gf_inv(a: int) -> int:
    """Multiplicative inverse as a^254 (a^255 = 1); maps 0 to 0.

    The exponent is public and fixed, so the squarings and multiplications
    happen in the same order for every ``a``.
    """
    result = 1
    square = a
    for bit in range(8):
        if (254 >> bit) & 1:  # bits of the public exponent, not of ``a``
            result = gf_mul(result, square)
        square = gf_mul(square, square)
    return result


# -- shares ----------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """One operator's share: the point (index, value) of every byte's polynomial.

    ``value`` is a secret (with ``threshold - 1`` others it yields the root
    key), so it is left out of the repr. ``threshold`` travels with each share
    because nothing in the values themselves says how many are needed.
    """

    index: int
    threshold: int
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_SHARES:
            raise ValueError(f"share index must be 1..{MAX_SHARES}, got {self.index}")
        if not 2 <= self.threshold <= MAX_SHARES:
            raise ValueError(f"share threshold must be 2..{MAX_SHARES}, got {self.threshold}")
        if not self.value:
            raise ValueError("share value must not be empty")

    def encode(self) -> str:
        """One line for an operator to store or type:
        ``kcs1-<threshold>-<index>-<base32 value>-<checksum>``.

        Lower-case base32 without padding (no 0/O, 1/l confusion in the
        alphabet); the checksum is the first 4 bytes of SHA-256 over everything
        before it, in hex, so a mistyped character is caught on decode instead
        of silently producing a wrong root key.
        """
        body = _body(self.threshold, self.index, self.value)
        return f"{body}-{_checksum(body)}"

    @classmethod
    def decode(cls, text: str) -> Share:
        """Inverse of ``encode``; raises ``ValueError`` saying what is wrong.

        Surrounding whitespace and upper case are forgiven (operators copy
        from paper); anything else must be exactly what ``encode`` writes.
        """
        line = text.strip().lower()
        parts = line.split("-")
        if len(parts) != 5 or parts[0] != _PREFIX:
            raise ValueError(
                f"not a keycask share: expected {_PREFIX}-<threshold>-<index>-<value>-<checksum>"
            )
        _, threshold_text, index_text, value_text, checksum = parts
        body = line.rpartition("-")[0]
        # Checked before parsing the fields, so a typo anywhere gets one clear message.
        if not hmac.compare_digest(checksum.encode(), _checksum(body).encode()):
            raise ValueError("share checksum does not match: the share was mistyped or damaged")
        if not (threshold_text.isdigit() and index_text.isdigit()):
            raise ValueError("share threshold and index must be decimal numbers")
        try:
            value = base64.b32decode(value_text.upper() + "=" * (-len(value_text) % 8))
        except ValueError:
            raise ValueError("share value is not valid base32") from None
        share = cls(index=int(index_text), threshold=int(threshold_text), value=value)
        # Non-canonical spellings (leading zeros, stray base32 bits) would decode
        # to the same share; refuse them so each share has exactly one text.
        if share.encode() != line:
            raise ValueError("share is not in canonical form")
        return share


def _body(threshold: int, index: int, value: bytes) -> str:
    value_text = base64.b32encode(value).decode("ascii").rstrip("=").lower()
    return f"{_PREFIX}-{threshold}-{index}-{value_text}"


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode("ascii", "replace")).hexdigest()[:_CHECKSUM_HEX]


# -- split and combine -----------------------------------------------------------


def split(secret: KeyMaterial, shares: int, threshold: int) -> list[Share]:
    """Split ``secret`` into ``shares`` shares, any ``threshold`` of which
    recover it and fewer of which say nothing about it.

    2 <= threshold <= shares <= 255; the shares have x coordinates 1..shares.
    """
    if not 2 <= threshold <= shares <= MAX_SHARES:
        raise ValueError(
            f"need 2 <= threshold <= shares <= {MAX_SHARES}, "
            f"got threshold={threshold}, shares={shares}"
        )
    raw = secret.reveal()
    size = len(raw)
    if size == 0:
        raise ValueError("cannot split an empty secret")
    ones = _ones(size)
    # Coefficients of x^1 .. x^(t-1), fresh from the OS CSPRNG for every split.
    coefficients = [int.from_bytes(random_bytes(size), "big") for _ in range(threshold - 1)]
    constant = int.from_bytes(raw, "big")
    result = []
    for x in range(1, shares + 1):
        x_lanes = ones * x
        # Horner's rule from the highest coefficient down to the secret.
        y = 0
        for c in reversed(coefficients):
            y = _vmul(y ^ c, x_lanes, ones)
        y ^= constant
        result.append(Share(index=x, threshold=threshold, value=y.to_bytes(size, "big")))
    return result


def combine(shares: Sequence[Share]) -> KeyMaterial:
    """The secret, by Lagrange interpolation at x = 0.

    Needs at least ``threshold`` shares with distinct indices, one threshold
    and one length; raises ``ValueError`` otherwise. More shares than the
    threshold are all used: consistent shares give the same answer.
    """
    if not shares:
        raise ValueError("no shares given")
    thresholds = {s.threshold for s in shares}
    if len(thresholds) != 1:
        raise ValueError("shares disagree on the threshold: they come from different splits")
    threshold = thresholds.pop()
    sizes = {len(s.value) for s in shares}
    if len(sizes) != 1:
        raise ValueError("shares have different lengths: they come from different splits")
    size = sizes.pop()
    xs = [s.index for s in shares]
    if len(set(xs)) != len(xs):
        raise ValueError("the same share was given more than once")
    if len(shares) < threshold:
        raise ValueError(f"need at least {threshold} shares, got {len(shares)}")
    ones = _ones(size)
    secret = 0
    for j, share in enumerate(shares):
        # Basis polynomial l_j(0) = prod_{m != j} x_m / (x_m - x_j); minus is xor.
        # The x coordinates are public, so this part needs no care.
        numerator, denominator = 1, 1
        for m, x_m in enumerate(xs):
            if m != j:
                numerator = gf_mul(numerator, x_m)
                denominator = gf_mul(denominator, x_m ^ xs[j])
        basis = gf_mul(numerator, gf_inv(denominator))
        secret ^= _vmul(int.from_bytes(share.value, "big"), ones * basis, ones)
    raw = secret.to_bytes(size, "big")
    if size in _AES_KEY_SIZES:
        return KeyMaterial(raw)
    return KeyMaterial.any_size(raw)
