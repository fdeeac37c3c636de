"""The Cloud KMS door's answers: key rings, crypto keys, versions and the
results of encrypt, decrypt and generateRandomBytes rendered in Cloud KMS's
JSON (enums as names, bytes in base64, int64 CRC32Cs as strings, times in
RFC 3339), with the CRC32C of every byte field it returns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pybase64

from keycask.keys.model import Key, KeyState, Origin
from keycask.service.core.gcp_requests import (
    DESTROY_SCHEDULED,
    DESTROYED,
    DISABLED,
    AsymmetricDecryptResult,
    DecryptResult,
    EncryptResult,
    IamPolicyResult,
    KeyResult,
    ListResult,
    LocationName,
    LocationsResult,
    MacResult,
    PublicKeyResult,
    RandomResult,
    RingResult,
    SignResult,
    TestPermissionsResult,
    VersionResult,
)
from keycask.service.doors.gcp_codec import crc32c

Doc = dict[str, Any]


# -- answers --


def _time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


time_of = _time


def _b64(data: bytes) -> str:
    return pybase64.b64encode_as_string(data)


def page_token(after: str) -> str:
    return pybase64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def _state(key: Key, own: str) -> str:
    """A version's state: its own (DESTROYED, DESTROY_SCHEDULED, DISABLED)
    if it has one, else its key's (a key pending deletion shows its
    versions DESTROY_SCHEDULED, a disabled key DISABLED)."""
    if own in (DESTROYED, DESTROY_SCHEDULED):
        return own
    if key.state is KeyState.PENDING_DELETION:
        return DESTROY_SCHEDULED
    if key.state is not KeyState.ENABLED:
        return DISABLED
    return own


def _when(seconds: float) -> str:
    return _time(datetime.fromtimestamp(seconds, UTC))


def version_doc(result: VersionResult) -> Doc:
    key, number = result.key, result.version
    entry = key.version(number)
    created = key.created if entry is None or entry.rotated is None else entry.rotated
    own = result.settings.state_of(number)
    state = _state(key, own.state)
    if key.origin is Origin.EXTERNAL and entry is not None and not entry.imported:
        state = DESTROYED  # its imported material was deleted (or expired)
    doc: Doc = {
        "name": result.name.version_name(number),
        "state": state,
        "protectionLevel": result.settings.protection_level,
        "algorithm": result.settings.algorithm,
        "createTime": _time(created),
        "generateTime": _time(created),
    }
    imported = result.settings.imports.get(number)
    if imported is not None:
        # Imported, not generated: created when imported, as Cloud KMS shows it.
        del doc["generateTime"]
        doc["createTime"] = doc["importTime"] = _when(imported[1])
        doc["importJob"] = imported[0]
    if own.destroy_time is not None:
        doc["destroyTime"] = _when(own.destroy_time)
    elif key.state is KeyState.PENDING_DELETION and key.deletion_date is not None:
        doc["destroyTime"] = _time(key.deletion_date)
    if own.destroy_event_time is not None:
        doc["destroyEventTime"] = _when(own.destroy_event_time)
    return doc


def key_doc(result: KeyResult) -> Doc:
    key, settings = result.key, result.settings
    doc: Doc = {
        "name": result.name.name,
        "purpose": settings.purpose,
        "createTime": _time(key.created),
        "versionTemplate": {
            "protectionLevel": settings.protection_level,
            "algorithm": settings.algorithm,
        },
        "destroyScheduledDuration": f"{settings.destroy_scheduled_seconds}s",
    }
    if settings.purpose == "ENCRYPT_DECRYPT" and key.current_version:
        primary = settings.primary_of(key)
        doc["primary"] = version_doc(VersionResult(result.name, key, primary, settings))
    if settings.labels:
        doc["labels"] = settings.labels
    if key.origin is Origin.EXTERNAL:
        doc["importOnly"] = True
    if key.rotation_period_days is not None:
        doc["rotationPeriod"] = f"{key.rotation_period_days * 86400}s"
        if key.next_rotation is not None:
            doc["nextRotationTime"] = _time(key.next_rotation)
    return doc


def ring_doc(result: RingResult) -> Doc:
    return {"name": result.name, "createTime": _time(result.created)}


_LISTED = {RingResult: ("keyRings", ring_doc), KeyResult: ("cryptoKeys", key_doc),
           VersionResult: ("cryptoKeyVersions", version_doc)}  # fmt: skip


def listed(field: str) -> Any:
    def render(result: ListResult) -> Doc:
        doc: Doc = {}
        items = []
        for item in result.items:
            items.append(_LISTED[type(item)][1](item))  # type: ignore[operator]
        if items:
            doc[field] = items
        if result.next_after is not None:
            doc["nextPageToken"] = page_token(result.next_after)
        if result.whole:
            doc["totalSize"] = len(items)
        return doc

    return render


def encrypted(result: EncryptResult) -> Doc:
    verified = result.verified
    return {
        "name": result.version_name,
        "ciphertext": _b64(result.ciphertext),
        "ciphertextCrc32c": str(crc32c(result.ciphertext)),
        "verifiedPlaintextCrc32c": verified[0],
        "verifiedAdditionalAuthenticatedDataCrc32c": verified[1],
        "protectionLevel": result.settings.protection_level,
    }


def decrypted(result: DecryptResult) -> Doc:
    return {
        "plaintext": _b64(result.plaintext),
        "plaintextCrc32c": str(crc32c(result.plaintext)),
        "usedPrimary": result.used_primary,
        "protectionLevel": result.protection_level,
    }


def random_out(result: RandomResult) -> Doc:
    return {"data": _b64(result.data), "dataCrc32c": str(crc32c(result.data))}


def signed(result: SignResult) -> Doc:
    return {
        "signature": _b64(result.signature),
        "signatureCrc32c": str(crc32c(result.signature)),
        "verifiedDataCrc32c": result.verified[0],
        "verifiedDigestCrc32c": result.verified[1],
        "name": result.version_name,
        "protectionLevel": result.protection_level,
    }


def asymmetric_decrypted(result: AsymmetricDecryptResult) -> Doc:
    return {
        "plaintext": _b64(result.plaintext),
        "plaintextCrc32c": str(crc32c(result.plaintext)),
        "verifiedCiphertextCrc32c": result.verified,
        "protectionLevel": result.protection_level,
    }


def pem(der: bytes) -> str:
    """A SubjectPublicKeyInfo in PEM, as Cloud KMS writes it."""
    body = pybase64.b64encode_as_string(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def public_key(result: PublicKeyResult) -> Doc:
    """The PEM (SubjectPublicKeyInfo), and ``publicKey`` in the format asked
    for: the PEM's bytes, the DER, or (NIST_PQC) the raw post-quantum key,
    when the pem field stays empty, as Cloud KMS leaves it."""
    doc: Doc = {
        "algorithm": result.algorithm,
        "name": result.version_name,
        "protectionLevel": result.protection_level,
        "publicKeyFormat": result.format,
    }
    if result.raw is not None:
        data = result.raw
    else:
        text = pem(result.der)
        doc["pem"], doc["pemCrc32c"] = text, str(crc32c(text.encode()))
        data = text.encode() if result.format == "PEM" else result.der
    doc["publicKey"] = {"data": _b64(data), "crc32cChecksum": str(crc32c(data))}
    return doc


def mac_signed(result: MacResult) -> Doc:
    mac = result.mac or b""
    return {
        "name": result.version_name,
        "mac": _b64(mac),
        "macCrc32c": str(crc32c(mac)),
        "verifiedDataCrc32c": result.verified[0],
        "protectionLevel": result.protection_level,
    }


def mac_verified(result: MacResult) -> Doc:
    return {
        "name": result.version_name,
        "success": result.success,
        "verifiedDataCrc32c": result.verified[0],
        "verifiedMacCrc32c": result.verified[1],
        "verifiedSuccessIntegrity": result.success,
        "protectionLevel": result.protection_level,
    }


def iam_policy(result: IamPolicyResult) -> Doc:
    doc: Doc = {"version": 1, "etag": result.etag}
    if result.bindings:
        doc["bindings"] = [{"role": b.role, "members": list(b.members)} for b in result.bindings]
    return doc


def permissions(result: TestPermissionsResult) -> Doc:
    return {"permissions": list(result.permissions)} if result.permissions else {}


def _location(name: LocationName) -> Doc:
    return {"name": name.name, "locationId": name.location, "displayName": name.location}


def locations(result: LocationsResult) -> Doc:
    return {"locations": [_location(n) for n in result.locations]}


def location(result: LocationsResult) -> Doc:
    return _location(result.locations[0])
