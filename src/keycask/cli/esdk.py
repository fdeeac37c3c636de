"""The AWS Encryption SDK's pieces bound to keycask: master key providers
whose KMS clients are ``Kms.client`` (keycask's endpoint, CA, retries and
the failure log ``explain`` reads), a materials manager that judges a
message's header before any key is asked for, and an input that remembers
whether it ran dry.

The SDK builds its own clients from a botocore session, which would
ignore ``--endpoint-url``, ``--ca-file`` and keycask's retry policy; the
providers override ``add_regional_client`` alone and keep the SDK's
client wrapping, _register_client (it drops a regional client after a
connection failure). The header checks live in the materials manager
because that is the one hook the SDK calls after parsing the header and
before calling KMS: a message with the wrong context or an unsigned suite
is refused without a Decrypt call, and its refusal is ours, not an SDK
exception to reinterpret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO

from aws_encryption_sdk import DiscoveryAwsKmsMasterKeyProvider, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.materials_managers.default import DefaultCryptoMaterialsManager

from keycask.cli.errors import CommandFailed
from keycask.cli.kmsclient import Kms


class _OnKeycask:
    """Mixed into an SDK provider: its regional clients are ``Kms.client``.
    The SDK's ``__new__`` builds the provider's config from every keyword,
    so ``kms`` is taken out before it and set before ``__init__`` (which
    already adds the first regional client)."""

    _kms: Kms
    _regional_clients: dict[str, Any]

    def __new__(cls, *, kms: Kms, **kwargs: Any) -> Any:
        instance = super().__new__(cls, **kwargs)
        instance._kms = kms
        return instance

    def __init__(self, *, kms: Kms, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def add_regional_client(self, region_name: str) -> None:
        if region_name not in self._regional_clients:
            client = self._kms.client(region_name)
            self._register_client(client, region_name)  # type: ignore[attr-defined]
            self._regional_clients[region_name] = client


class StrictProvider(_OnKeycask, StrictAwsKmsMasterKeyProvider):  # type: ignore[misc]
    """The keys named: the first generates the data key, the others wrap it
    too; on decrypt, only an encrypted data key one of them made is tried."""


class DiscoveryProvider(_OnKeycask, DiscoveryAwsKmsMasterKeyProvider):  # type: ignore[misc]
    """Decrypt with whichever key the message names, as far as the caller's
    credentials allow."""


def strict(kms: Kms, key_ids: list[str]) -> StrictProvider:
    return StrictProvider(
        kms=kms, key_ids=key_ids, botocore_session=kms.session, region_names=[kms.region]
    )


def discovery(kms: Kms) -> DiscoveryProvider:
    return DiscoveryProvider(kms=kms, botocore_session=kms.session, region_names=[kms.region])


class MessageRefused(CommandFailed):
    """The header says this message is not to be decrypted as asked."""


def context_mismatch(found: Mapping[str, str], required: Mapping[str, str]) -> str | None:
    """Why ``found`` (a message's encryption context) lacks ``required``'s
    pairs, naming the first one missing or different; None when it has them."""
    for key, value in required.items():
        if key not in found:
            return f"the message's encryption context has no {key!r} (--context {key}={value})"
        if found[key] != value:
            return (
                f"the message's encryption context has {key}={found[key]!r}, "
                f"not {key}={value!r} (--context)"
            )
    return None


class CheckingMaterialsManager(DefaultCryptoMaterialsManager):  # type: ignore[misc]
    """The default materials manager, after two checks of the parsed header:
    a signed algorithm suite (unless ``allow_unsigned``) and every pair of
    ``required`` in the encryption context. The context read here is not
    yet authenticated, but a refusal is all it can cause; once the header's
    tag verifies (after this returns) it is the message's own.

    ``asked`` and ``opened`` record how far decryption got, which is what
    tells a malformed header from a refused key from a forged body."""

    def __init__(self, provider: Any, *, required: Mapping[str, str], allow_unsigned: bool) -> None:
        super().__init__(master_key_provider=provider)
        self._required = dict(required)
        self._allow_unsigned = allow_unsigned
        self.asked = False
        self.opened = False
        self.key_arns: list[str] = []

    def decrypt_materials(self, request: Any) -> Any:
        self.asked = True
        self.key_arns = [
            bytes(edk.key_provider.key_info).decode(errors="replace")
            for edk in request.encrypted_data_keys
        ]
        algorithm = request.algorithm
        if algorithm.signing_algorithm_info is None and not self._allow_unsigned:
            raise MessageRefused(
                f"the message uses the unsigned algorithm suite {algorithm.name}: anyone "
                "allowed to decrypt its data key could have written it; give "
                "--allow-unsigned to accept it"
            )
        problem = context_mismatch(request.encryption_context, self._required)
        if problem is not None:
            raise MessageRefused(problem)
        materials = super().decrypt_materials(request)
        self.opened = True
        return materials


class Source:
    """The input as the SDK reads it, counting bytes for the progress bar
    and noting when a read came back short: the SDK only ever asks for
    bytes the message says are still to come, so a short read means the
    input ended before the message did (truncated)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.consumed = 0
        self.ran_dry = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.consumed += len(data)
        if size is None or size < 0 or len(data) < size:
            self.ran_dry = True
        return data

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return False

    def tell(self) -> int:
        # Not seekable, on purpose: the SDK would otherwise seek a regular
        # file to learn its length, which it does not need.
        raise OSError("not seekable")
