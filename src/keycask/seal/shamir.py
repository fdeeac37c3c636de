"""The Shamir seal: the root key exists only as shares held by people.

``init`` makes a root key, splits it (any ``threshold`` of ``shares``
recover it) and hands the share lines back once; the seal file keeps the
numbers and a SHA-256 digest of each share (so a share that was never handed
out is refused before it counts), never a share itself. Unsealing
collects shares one at a time (``ShareCollector``), as operators arrive; the
keyring then proves whether the combined key is the right one.

The file also holds ``check``, an HMAC of a fixed label under the root key:
it says nothing about the root (HMAC-SHA256 keyed with 256 random bits), and
tells which of two seal files a combined key belongs to while a rekey is
half done (``service/sealing.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from keycask.crypto import KeyMaterial, Share, combine_shares, split_secret
from keycask.errors import SealError
from keycask.seal import sealfile
from keycask.seal.types import Option, Params, Secret, SecretSource

SEAL_FILE = "seal.json"
SEAL_TYPE = "shamir"
ROOT_KEY_SIZE = 32
DEFAULT_SHARES = 5
DEFAULT_THRESHOLD = 3
_CHECK_LABEL = b"keycask shamir seal check v1"
_SHARE_LABEL = b"keycask shamir share digest v1|"
# A partial collection older than this is dropped: shares given and forgotten
# (or planted by whoever holds the operator token) must not jam it for good.
COLLECTION_TIMEOUT = 600.0


def root_check(root: KeyMaterial) -> str:
    return root.hmac_sha256(_CHECK_LABEL)[:16].hex()


def share_digest(share: Share) -> str:
    """SHA-256 of one share (its index, threshold and value). A share's value
    is as random as the root key, so its digest reveals nothing of it, and
    lets the seal recognise its own shares one by one: a well-formed share
    that was not handed out (forged: the checksum on a share line is public)
    is refused before it counts."""
    body = f"{share.index}|{share.threshold}|".encode() + share.value
    return hashlib.sha256(_SHARE_LABEL + body).hexdigest()


class ShamirSeal:
    name = SEAL_TYPE

    def __init__(self, directory: Path, filename: str = SEAL_FILE) -> None:
        self.path = Path(directory) / filename

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        shares: int = DEFAULT_SHARES,
        threshold: int = DEFAULT_THRESHOLD,
        root: KeyMaterial | None = None,
        filename: str = SEAL_FILE,
    ) -> tuple[KeyMaterial, list[str]]:
        """Split ``root`` (by default a new random key); returns it and the
        share lines, which nothing else keeps."""
        if not 2 <= threshold <= shares <= 255:
            raise SealError(
                "Shamir needs 2 <= threshold <= shares <= 255, "
                f"got --shares {shares} --threshold {threshold}"
            )
        seal_ = cls(directory, filename)
        root = KeyMaterial.generate(ROOT_KEY_SIZE) if root is None else root
        split = split_secret(root, shares, threshold)
        sealfile.write_new(
            seal_.path,
            {
                "type": SEAL_TYPE,
                "shares": shares,
                "threshold": threshold,
                "check": root_check(root),
                "share_digests": {str(s.index): share_digest(s) for s in split},
            },
        )
        return root, [share.encode() for share in split]

    def config(self) -> tuple[int, int]:
        """(shares, threshold) from the seal file."""
        document = sealfile.read(
            self.path,
            missing=f"no Shamir seal at {self.path}; initialise one first",
            invalid=f"{self.path} is not a valid seal file",
        )
        shares, threshold = document.get("shares"), document.get("threshold")
        if (
            document.get("type") != SEAL_TYPE
            or type(shares) is not int
            or type(threshold) is not int
            or not 2 <= threshold <= shares <= 255
        ):
            raise SealError(f"{self.path} is not a valid Shamir seal file")
        return shares, threshold

    def knows(self, share: Share) -> bool | None:
        """Whether ``share`` is one of those this file's split handed out;
        None for a file written before seals kept share digests."""
        document = sealfile.read(self.path, missing="no seal file", invalid="bad seal file")
        digests = document.get("share_digests")
        if not isinstance(digests, dict):
            return None
        expected = digests.get(str(share.index))
        return isinstance(expected, str) and hmac.compare_digest(expected, share_digest(share))

    def opens(self, root: KeyMaterial) -> bool:
        """Whether ``root`` is the key this file's shares were split from."""
        document = sealfile.read(self.path, missing="no seal file", invalid="bad seal file")
        check = document.get("check")
        return isinstance(check, str) and hmac.compare_digest(check, root_check(root))


class ShareCollector:
    """Shares handed in one at a time until there are ``threshold`` of them.

    Holds the shares given so far in memory only; ``reset`` forgets them, and
    so does a collection left unfinished for ``timeout`` seconds. ``knows``
    (the seal files' share digests) refuses a share that was never handed
    out before it counts; a seal file without digests accepts any
    well-formed share, and then two different shares with one index drop
    the collection instead of jamming it.
    """

    def __init__(
        self,
        threshold: int,
        *,
        knows: Callable[[Share], bool | None] | None = None,
        timeout: float = COLLECTION_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self._knows = knows
        self._timeout = timeout
        self._clock = clock
        self._started = 0.0
        self._shares: dict[int, Share] = {}

    @property
    def progress(self) -> int:
        self._expire()
        return len(self._shares)

    def reset(self) -> None:
        self._shares.clear()

    def _expire(self) -> None:
        if self._shares and self._clock() - self._started > self._timeout:
            self.reset()

    def add(self, text: str) -> KeyMaterial | None:
        """Take one share line; the combined key once ``threshold`` shares are
        in (and the collector is empty again), else None. ``SealError`` for a
        malformed share, one from another split, one this seal never handed
        out, or one given twice; the shares already given stay."""
        self._expire()
        try:
            share = Share.decode(text)
        except ValueError as exc:
            raise SealError(f"not a valid share: {exc}") from None
        if share.threshold != self.threshold:
            raise SealError(
                f"this share is from a split needing {share.threshold} shares; "
                f"this seal needs {self.threshold}"
            )
        if self._knows is not None and self._knows(share) is False:
            raise SealError(
                f"share {share.index} is not one this seal handed out "
                "(forged, mistyped in a way its checksum missed, or from another split); "
                "it was not counted"
            )
        held = self._shares.get(share.index)
        if held is not None:
            if hmac.compare_digest(held.value, share.value):
                raise SealError(f"share {share.index} was already given")
            self.reset()
            raise SealError(
                f"two different shares numbered {share.index} were given; "
                "the shares given so far were dropped: start again"
            )
        if self._shares and {len(s.value) for s in self._shares.values()} != {len(share.value)}:
            # Either this share or those before it are from another split;
            # keeping them would jam every later share, so start again.
            self.reset()
            raise SealError(
                "this share is from another split (its length differs); "
                "the shares given so far were dropped: start again"
            )
        if not self._shares:
            self._started = self._clock()
        self._shares[share.index] = share
        if len(self._shares) < self.threshold:
            return None
        shares = list(self._shares.values())
        self.reset()
        try:
            return combine_shares(shares)
        except ValueError as exc:
            raise SealError(f"the shares do not combine: {exc}") from None


class ShamirType:
    """The Shamir seal as a ``SealType``: the root key split into shares, a
    threshold of which open it."""

    name = SEAL_TYPE
    title = "Shamir"
    secret = Secret.SHARES
    proof = "the threshold of current shares"
    verified_by_server = False
    options = (
        Option(
            "--shares", "Shares", "Shamir: shares to make", integer=True, default=DEFAULT_SHARES
        ),
        Option(
            "--threshold",
            "Threshold",
            "Shamir: shares needed",
            integer=True,
            default=DEFAULT_THRESHOLD,
        ),
    )
    new_secret = None
    unseal_secret = SecretSource("Share: ")
    current_secret = SecretSource(
        "Current share: ",
        "--current-shares-file",
        help="current Shamir shares, one per line (else prompted)",
    )
    startup = None

    def validate(self, params: Params, *, modules: Iterable[str] | None) -> None:
        if not 2 <= params.threshold <= params.shares <= 255:
            raise SealError("Shamir needs 2 <= threshold <= shares <= 255")
        if params.share_keys and len(params.share_keys) != params.shares:
            raise SealError(
                f"give one share key per share: {params.shares} shares, "
                f"{len(params.share_keys)} keys"
            )

    def initialise(
        self, directory: Path, params: Params, *, root: KeyMaterial | None, filename: str
    ) -> tuple[KeyMaterial, list[str]]:
        return ShamirSeal.init(
            directory,
            shares=params.shares,
            threshold=params.threshold,
            root=root,
            filename=filename,
        )

    def check_written(
        self,
        directory: Path,
        filename: str,
        params: Params,
        root: KeyMaterial,
        modules: Iterable[str],
    ) -> None:
        return None

    def open(
        self, directory: Path, filename: str, secret: str, *, modules: Iterable[str]
    ) -> KeyMaterial:
        raise SealError("a Shamir seal opens with a threshold of shares, one at a time")

    def share_file(self, directory: Path, filename: str) -> ShamirSeal:
        return ShamirSeal(directory, filename)
