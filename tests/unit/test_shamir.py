"""Shamir secret sharing: the field arithmetic against an independent table-based
reference, split/combine round trips, the secrecy of fewer than threshold
shares, the refusals, and the one-line share encoding that catches typos."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.crypto import KeyMaterial, Share, combine_shares, random_bytes, shamir, split_secret
from keycask.crypto.shamir import combine, gf_inv, gf_mul, split

# -- an independent reference: log/exp tables (fine in a test, not in the library)


def _xtime(a: int) -> int:
    return ((a << 1) ^ (0x1B if a & 0x80 else 0)) & 0xFF


def _tables() -> tuple[list[int], list[int]]:
    exp = [0] * 255
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x ^= _xtime(x)  # times 0x03, a generator of GF(2^8)*
    assert x == 1 and sorted(exp) == list(range(1, 256))
    return exp, log


EXP, LOG = _tables()


def ref_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return EXP[(LOG[a] + LOG[b]) % 255]


def ref_inv(a: int) -> int:
    return EXP[(255 - LOG[a]) % 255]


def ref_eval(coefficients: list[int], x: int) -> int:
    """sum c_i x^i with c_0 first."""
    y, power = 0, 1
    for c in coefficients:
        y ^= ref_mul(c, power)
        power = ref_mul(power, x)
    return y


def ref_interpolate_at_zero(points: list[tuple[int, int]]) -> int:
    total = 0
    for j, (x_j, y_j) in enumerate(points):
        basis = 1
        for m, (x_m, _) in enumerate(points):
            if m != j:
                basis = ref_mul(basis, ref_mul(x_m, ref_inv(x_m ^ x_j)))
        total ^= ref_mul(y_j, basis)
    return total


def ref_split(secret: bytes, coefficients: list[bytes], shares: int) -> list[bytes]:
    """Share values for x = 1..shares; ``coefficients[k]`` holds x^(k+1)'s bytes."""
    return [
        bytes(ref_eval([secret[i]] + [c[i] for c in coefficients], x) for i in range(len(secret)))
        for x in range(1, shares + 1)
    ]


def _fixed_randomness(monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> None:
    source: Iterator[bytes] = iter(chunks)

    def fake(n: int) -> bytes:
        chunk = next(source)
        assert len(chunk) == n
        return chunk

    monkeypatch.setattr(shamir, "random_bytes", fake)


# -- GF(2^8) ----------------------------------------------------------------------


def test_reference_tables_agree_with_fips197_examples() -> None:
    assert ref_mul(0x57, 0x83) == 0xC1
    assert ref_mul(0x53, 0xCA) == 0x01


def test_fips197_examples() -> None:
    # FIPS-197 section 4.2: {57}.{83} = {c1}; {53} and {ca} are inverses.
    assert gf_mul(0x57, 0x83) == 0xC1
    assert gf_mul(0x53, 0xCA) == 0x01
    assert gf_inv(0x53) == 0xCA


def test_mul_agrees_with_table_reference_for_all_pairs() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_mul(a, b) == ref_mul(a, b), (a, b)


def test_inverse_of_every_nonzero_element() -> None:
    for a in range(1, 256):
        inverse = gf_inv(a)
        assert gf_mul(a, inverse) == 1, a
        assert inverse == ref_inv(a)
    assert gf_inv(0) == 0


@given(st.binary(min_size=1, max_size=40), st.binary(min_size=1, max_size=40))
def test_packed_lanes_multiply_bytewise(a: bytes, b: bytes) -> None:
    size = min(len(a), len(b))
    a, b = a[:size], b[:size]
    packed = shamir._vmul(int.from_bytes(a, "big"), int.from_bytes(b, "big"), shamir._ones(size))
    assert packed.to_bytes(size, "big") == bytes(ref_mul(x, y) for x, y in zip(a, b, strict=True))


# -- known vectors ------------------------------------------------------------------


def test_hand_computed_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    # f(x) = 0x53 + 0xca x: f(1) = 0x99, f(2) = 0x53 ^ 0x8f = 0xdc, f(3) = 0x53 ^ 0x45 = 0x16.
    _fixed_randomness(monkeypatch, [b"\xca"])
    shares = split(KeyMaterial.any_size(b"\x53"), 3, 2)
    assert [(s.index, s.threshold, s.value) for s in shares] == [
        (1, 2, b"\x99"),
        (2, 2, b"\xdc"),
        (3, 2, b"\x16"),
    ]
    assert ref_split(b"\x53", [b"\xca"], 3) == [b"\x99", b"\xdc", b"\x16"]
    assert combine(shares[1:]).reveal() == b"\x53"


VECTOR_SECRET = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
VECTOR_COEFFICIENTS = [
    bytes.fromhex("ff" * 32),
    bytes(range(0x80, 0xA0)),
    bytes.fromhex("53ca57830102040810204080" + "00" * 20),
]


def test_vector_against_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_randomness(monkeypatch, list(VECTOR_COEFFICIENTS))
    shares = split(KeyMaterial(VECTOR_SECRET), 6, 4)
    expected = ref_split(VECTOR_SECRET, VECTOR_COEFFICIENTS, 6)
    assert [s.value for s in shares] == expected
    assert [s.index for s in shares] == [1, 2, 3, 4, 5, 6]
    assert {s.threshold for s in shares} == {4}
    for subset in itertools.combinations(shares, 4):
        assert combine(subset).reveal() == VECTOR_SECRET


# -- round trips --------------------------------------------------------------------

secrets_ = st.one_of(
    st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.binary(min_size=1, max_size=64),
)


@st.composite
def splits(draw: st.DrawFn) -> tuple[bytes, int, int]:
    secret = draw(secrets_)
    n = draw(st.integers(2, 12))
    t = draw(st.integers(2, n))
    return secret, n, t


def _material(secret: bytes) -> KeyMaterial:
    return KeyMaterial(secret) if len(secret) in (16, 24, 32) else KeyMaterial.any_size(secret)


@settings(max_examples=150)
@given(splits(), st.data())
def test_any_threshold_shares_recover_the_secret(
    case: tuple[bytes, int, int], data: st.DataObject
) -> None:
    secret, n, t = case
    shares = split_secret(_material(secret), n, t)
    assert len(shares) == n
    k = data.draw(st.integers(t, n))
    chosen = data.draw(st.permutations(shares))[:k]
    recovered = combine_shares(chosen)
    assert recovered.reveal() == secret
    # Independent check: the reference interpolation agrees byte by byte.
    head = chosen[:t]
    assert (
        bytes(
            ref_interpolate_at_zero([(s.index, s.value[i]) for s in head])
            for i in range(len(secret))
        )
        == secret
    )


def test_aes_sized_secrets_come_back_as_key_material() -> None:
    key = KeyMaterial.generate(32)
    recovered = combine(split(key, 3, 2)[:2])
    assert recovered.matches(key)
    assert len(recovered) == 32
    recovered.aead()  # a real AES key, not the any-size kind


def test_maximum_split() -> None:
    key = KeyMaterial.generate(32)
    shares = split(key, 255, 255)
    assert [s.index for s in shares] == list(range(1, 256))
    assert combine(shares).matches(key)


# -- fewer than threshold shares say nothing ------------------------------------------


@settings(max_examples=50)
@given(st.binary(min_size=32, max_size=32), st.integers(3, 6))
def test_threshold_minus_one_shares_do_not_give_the_secret(secret: bytes, t: int) -> None:
    shares = split(KeyMaterial(secret), t + 2, t)[: t - 1]
    # Lie about the threshold so combine interpolates the T-1 points it has.
    relabelled = [Share(index=s.index, threshold=t - 1, value=s.value) for s in shares]
    assert combine(relabelled).reveal() != secret  # equal with odds 2^-256


def test_threshold_minus_one_shares_match_the_secret_only_by_chance() -> None:
    # Interpolating T-1 points of a degree T-1 polynomial gives a uniformly random
    # byte: it equals the secret's byte about 1 time in 256.
    secret = bytes(range(32))
    matches = total = 0
    for t in (2, 3, 4):
        for _ in range(40):
            shares = split(KeyMaterial(secret), t, t)[: t - 1]
            for i in range(32):
                guess = ref_interpolate_at_zero([(s.index, s.value[i]) for s in shares])
                matches += guess == secret[i]
                total += 1
    expected = total / 256  # 15
    assert matches < expected * 4, (matches, total)


def test_one_share_of_two_is_every_value_equally_for_every_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Perfect secrecy at threshold 2: running split over all 256 coefficients,
    # every share index takes every value exactly once, whatever the secret.
    for secret in (0x00, 0x53, 0xFF):
        _fixed_randomness(monkeypatch, [bytes([a]) for a in range(256)])
        by_index: dict[int, list[int]] = {}
        for _ in range(256):
            for s in split(KeyMaterial.any_size(bytes([secret])), 255, 2):
                by_index.setdefault(s.index, []).append(s.value[0])
        assert len(by_index) == 255
        for values in by_index.values():
            assert sorted(values) == list(range(256))


def test_share_values_look_uniform_for_constant_secrets() -> None:
    # A chi-square check on real randomness: 4096 bytes over 256 bins, df = 255
    # (mean 255, sd ~22.6); 400 is more than six standard deviations out.
    for secret in (bytes(32), b"\xff" * 32):
        counts = [0] * 256
        for _ in range(128):
            for b in split(KeyMaterial(secret), 2, 2)[0].value:
                counts[b] += 1
        chi2 = sum((c - 16) ** 2 / 16 for c in counts)
        assert chi2 < 400, chi2


def test_split_draws_fresh_randomness_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = random_bytes

    def spy(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(shamir, "random_bytes", spy)
    key = KeyMaterial.generate(32)
    first = split(key, 5, 3)
    second = split(key, 5, 3)
    assert calls == [32, 32, 32, 32]  # t-1 coefficients of 32 bytes per split
    assert all(a.value != b.value for a, b in zip(first, second, strict=True))


# -- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(("shares", "threshold"), [(3, 1), (2, 3), (256, 2), (1, 1), (5, 0)])
def test_split_refuses_bad_parameters(shares: int, threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        split(KeyMaterial.generate(32), shares, threshold)


def test_split_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="empty"):
        split(KeyMaterial.any_size(b""), 3, 2)


def test_combine_refusals() -> None:
    shares = split(KeyMaterial.generate(32), 5, 3)
    other = split(KeyMaterial.generate(32), 5, 2)
    short = split(KeyMaterial.generate(16), 5, 3)
    with pytest.raises(ValueError, match="no shares"):
        combine([])
    with pytest.raises(ValueError, match="at least 3"):
        combine(shares[:2])
    with pytest.raises(ValueError, match="more than once"):
        combine([shares[0], shares[1], shares[0]])
    with pytest.raises(ValueError, match="more than once"):  # same x, different value
        combine([shares[0], shares[1], Share(1, 3, b"\x00" * 32)])
    with pytest.raises(ValueError, match="threshold"):
        combine([shares[0], shares[1], other[2]])
    with pytest.raises(ValueError, match="lengths"):
        combine([shares[0], shares[1], short[2]])


@pytest.mark.parametrize(
    ("index", "threshold", "value"),
    [(0, 2, b"x"), (256, 2, b"x"), (1, 1, b"x"), (1, 256, b"x"), (1, 2, b"")],
)
def test_share_refuses_bad_fields(index: int, threshold: int, value: bytes) -> None:
    with pytest.raises(ValueError):
        Share(index=index, threshold=threshold, value=value)


# -- encoding -------------------------------------------------------------------------


def test_repr_hides_the_value() -> None:
    share = split(KeyMaterial.generate(32), 3, 2)[0]
    text = share.encode()
    for shown in (repr(share), str(share), f"{share}"):
        assert shown == "Share(index=1, threshold=2)"
        assert share.value.hex() not in shown
        assert text.split("-")[3] not in shown


def test_encoding_shape() -> None:
    share = Share(index=7, threshold=3, value=bytes(range(32)))
    text = share.encode()
    prefix, threshold, index, value, checksum = text.split("-")
    assert (prefix, threshold, index) == ("kcs1", "3", "7")
    assert value == value.lower() and "=" not in value and len(value) == 52
    assert len(checksum) == 8 and int(checksum, 16) >= 0
    assert "\n" not in text


@given(st.integers(1, 255), st.integers(2, 255), st.binary(min_size=1, max_size=64))
def test_encode_decode_round_trip(index: int, threshold: int, value: bytes) -> None:
    share = Share(index=index, threshold=threshold, value=value)
    assert Share.decode(share.encode()) == share


def test_decode_forgives_case_and_whitespace() -> None:
    share = split(KeyMaterial.generate(32), 3, 2)[2]
    assert Share.decode("  " + share.encode().upper() + "\n") == share


ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-=_ ?"


def test_every_single_character_change_is_caught() -> None:
    for share in [*split(KeyMaterial.generate(32), 3, 2), Share(12, 200, b"\x00" * 16)]:
        text = share.encode()
        variants: set[str] = set()
        for i, original in enumerate(text):
            for c in ALPHABET:
                if c != original:
                    variants.add(text[:i] + c + text[i + 1 :])  # substitution
            variants.add(text[:i] + text[i + 1 :])  # deletion
            for c in ALPHABET:
                variants.add(text[:i] + c + text[i:])  # insertion
            if i + 1 < len(text):
                variants.add(text[:i] + text[i + 1] + original + text[i + 2 :])  # swap
        variants.discard(text)
        # Edits that only add surrounding whitespace are the same share.
        variants = {v for v in variants if v.strip() != text}
        assert len(variants) > 1000
        for variant in variants:
            with pytest.raises(ValueError):
                Share.decode(variant)


def test_decode_messages() -> None:
    text = Share(index=3, threshold=2, value=b"\x01" * 32).encode()
    with pytest.raises(ValueError, match="not a keycask share"):
        Share.decode("hello")
    with pytest.raises(ValueError, match="not a keycask share"):
        Share.decode(text.replace("kcs1", "kcs2", 1))
    with pytest.raises(ValueError, match="checksum"):
        Share.decode(text[:-1] + ("0" if text[-1] != "0" else "1"))


def _with_checksum(body: str) -> str:
    return f"{body}-{shamir._checksum(body)}"


def test_decode_refuses_non_canonical_text_even_with_a_good_checksum() -> None:
    value = shamir._body(2, 3, b"\x01" * 32).split("-")[3]
    for body, message in [
        (f"kcs1-2-03-{value}", "canonical"),  # leading zero
        (f"kcs1-2-3-{value}=", "canonical"),  # padding
        (f"kcs1-2-3-{value[:-1]}1", "base32"),  # 1 is not in the alphabet
        (f"kcs1-2-3-{value[:-1]}b", "canonical"),  # stray bits past the last byte
        (f"kcs1-x-3-{value}", "decimal"),
        (f"kcs1-2-0-{value}", "index"),
        (f"kcs1-1-3-{value}", "threshold"),
        ("kcs1-2-3-", "empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            Share.decode(_with_checksum(body))


def test_decoded_shares_combine() -> None:
    key = KeyMaterial.generate(32)
    lines = [s.encode() for s in split(key, 5, 3)]
    assert combine([Share.decode(line) for line in (lines[4], lines[0], lines[2])]).matches(key)
