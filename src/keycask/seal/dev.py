"""The development seal: the root key sits in a 0600 file next to the data.

Anyone who can read the data dir can read every key: fine for a laptop, never
for production, which is why only ``--dev`` selects it and it says so loudly.
"""

from __future__ import annotations

from pathlib import Path

from keycask import privatefile
from keycask.crypto import KeyMaterial
from keycask.errors import SealError

ROOT_KEY_FILE = "dev-root.key"
WARNING = (
    "WARNING: keycask is running with the DEV seal. The root key is stored in plain "
    "form at {path}; anyone who can read the data directory can decrypt every key. "
    "Never use --dev for real secrets."
)


class DevSeal:
    name = "dev"

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ROOT_KEY_FILE

    def root_key(self) -> KeyMaterial:
        if not self.path.exists():
            self._create()
        st = self.path.stat()
        if st.st_mode & 0o077:
            raise SealError(f"{self.path} must be readable by its owner only (chmod 600)")
        raw = self.path.read_bytes()
        if len(raw) != 32:
            raise SealError(f"{self.path} does not hold a 32-byte root key")
        return KeyMaterial(raw)

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = KeyMaterial.generate(32)
        # Never replacing: two processes starting at once must not each write a key.
        privatefile.write_new(self.path, key.reveal())
