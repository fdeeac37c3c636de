"""The Shamir seal: the root key exists only as shares held by people.

``init`` makes a root key, splits it (any ``threshold`` of ``shares``
recover it) and hands the share lines back once; the seal file keeps only
the numbers, never a share or anything derived from the root. Unsealing
collects shares one at a time (``ShareCollector``), as operators arrive; the
keyring then proves whether the combined key is the right one.

The file also holds ``check``, an HMAC of a fixed label under the root key:
it says nothing about the root (HMAC-SHA256 keyed with 256 random bits), and
tells which of two seal files a combined key belongs to while a rekey is
half done (``service/sealing.py``).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from keycask.crypto import KeyMaterial, Share, combine_shares, split_secret
from keycask.errors import SealError
from keycask.seal import sealfile

SEAL_FILE = "seal.json"
SEAL_TYPE = "shamir"
ROOT_KEY_SIZE = 32
DEFAULT_SHARES = 5
DEFAULT_THRESHOLD = 3
_CHECK_LABEL = b"keycask shamir seal check v1"


def root_check(root: KeyMaterial) -> str:
    return root.hmac_sha256(_CHECK_LABEL)[:16].hex()


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
        lines = [share.encode() for share in split_secret(root, shares, threshold)]
        sealfile.write_new(
            seal_.path,
            {
                "type": SEAL_TYPE,
                "shares": shares,
                "threshold": threshold,
                "check": root_check(root),
            },
        )
        return root, lines

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

    def opens(self, root: KeyMaterial) -> bool:
        """Whether ``root`` is the key this file's shares were split from."""
        document = sealfile.read(self.path, missing="no seal file", invalid="bad seal file")
        check = document.get("check")
        return isinstance(check, str) and hmac.compare_digest(check, root_check(root))


class ShareCollector:
    """Shares handed in one at a time until there are ``threshold`` of them.

    Holds the shares given so far in memory only; ``reset`` forgets them.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._shares: dict[int, Share] = {}

    @property
    def progress(self) -> int:
        return len(self._shares)

    def reset(self) -> None:
        self._shares.clear()

    def add(self, text: str) -> KeyMaterial | None:
        """Take one share line; the combined key once ``threshold`` shares are
        in (and the collector is empty again), else None. ``SealError`` for a
        malformed share, one from another split or one given twice; the
        shares already given stay."""
        try:
            share = Share.decode(text)
        except ValueError as exc:
            raise SealError(f"not a valid share: {exc}") from None
        if share.threshold != self.threshold:
            raise SealError(
                f"this share is from a split needing {share.threshold} shares; "
                f"this seal needs {self.threshold}"
            )
        held = self._shares.get(share.index)
        if held is not None:
            raise SealError(f"share {share.index} was already given")
        if self._shares and {len(s.value) for s in self._shares.values()} != {len(share.value)}:
            # Either this share or those before it are from another split;
            # keeping them would jam every later share, so start again.
            self.reset()
            raise SealError(
                "this share is from another split (its length differs); "
                "the shares given so far were dropped: start again"
            )
        self._shares[share.index] = share
        if len(self._shares) < self.threshold:
            return None
        shares = list(self._shares.values())
        self.reset()
        try:
            return combine_shares(shares)
        except ValueError as exc:
            raise SealError(f"the shares do not combine: {exc}") from None
