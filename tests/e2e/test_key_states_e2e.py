"""The key state table, on real keys through boto3.

tests/unit/test_key_states.py writes out AWS's "Key states of KMS keys" table
cell by cell and checks ``keycask.keys.states`` against it. This module checks
that the server really answers so: keys are driven into each state the way a
client would (Enabled: CreateKey; Disabled: DisableKey; PendingDeletion:
ScheduleKeyDeletion; PendingImport: CreateKey with Origin EXTERNAL;
PendingReplicaDeletion: ScheduleKeyDeletion on a multi-Region primary with a
replica), and every operation of the table is called on each with a valid
request.

Where AWS's answer depends on the key's origin before its state (rotation
settings of imported keys, import operations on AWS-made keys), the key's
origin is chosen so the state rule is what answers. Calls that succeed and
change a key (EnableKey, ScheduleKeyDeletion, DeleteImportedKeyMaterial, ...)
get a key of their own, so the shared keys stay in their states; every test
checks that they did.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from conftest import Server
from keycask.keys.model import KeyState
from keycask.keys.states import ALLOWED_STATES

E = KeyState.ENABLED
D = KeyState.DISABLED
PD = KeyState.PENDING_DELETION
PI = KeyState.PENDING_IMPORT
PRD = KeyState.PENDING_REPLICA_DELETION
# The states a client can drive a key into. Creating and Updating are never
# observed (keycask changes a multi-Region set in one commit): the unit test
# checks their column of the table.
REACHABLE = (E, D, PD, PI, PRD)
MULTI_REGION = (KeyState.CREATING, KeyState.UPDATING)
AWS_KMS = "AWS_KMS"
EXTERNAL = "EXTERNAL"
CONTEXT = {"suite": "key-states-e2e"}
SIGNING = {"ECC_NIST_P256": "ECDSA_SHA_256"}
P256 = "ECC_NIST_P256"
WEST = "us-west-2"


def _load_expected() -> dict[str, dict[KeyState, type[Exception] | None]]:
    """AWS's table as the unit test writes it out (tests/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "unit" / "test_key_states.py"
    spec = importlib.util.spec_from_file_location("_aws_key_state_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected: dict[str, dict[KeyState, type[Exception] | None]] = module.EXPECTED
    return expected


EXPECTED = _load_expected()


# -- the keys --


@dataclass(frozen=True)
class TestKey:
    __test__ = False  # not a test class, whatever its name says

    key_id: str
    arn: str
    origin: str
    state: KeyState
    blob: bytes  # a ciphertext naming this key
    material: bytes | None  # imported material, for EXTERNAL keys that have it


def _wrap(public_der: bytes, material: bytes) -> bytes:
    """RSAES_OAEP_SHA_256 to the public key GetParametersForImport gave."""
    public = serialization.load_der_public_key(public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return public.encrypt(material, oaep)


class World:
    """A server with a shared key per (state, origin), and a factory of fresh ones."""

    def __init__(self, server: Server) -> None:
        self.kms = server.client()
        self.healthy = self._make(E, AWS_KMS)
        self.shared = {
            (E, AWS_KMS): self._make(E, AWS_KMS),
            (D, AWS_KMS): self._make(D, AWS_KMS),
            (PD, AWS_KMS): self._make(PD, AWS_KMS),
            (E, EXTERNAL): self._make(E, EXTERNAL),
            (D, EXTERNAL): self._make(D, EXTERNAL),
            (PD, EXTERNAL): self._make(PD, EXTERNAL),
            (PI, EXTERNAL): self._make(PI, EXTERNAL),
            (PRD, AWS_KMS): self._make(PRD, AWS_KMS),
        }

    def params(self, key_id: str) -> dict[str, Any]:
        params: dict[str, Any] = self.kms.get_parameters_for_import(
            KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
        )
        return params

    def import_material(self, key_id: str, material: bytes) -> None:
        params = self.params(key_id)
        self.kms.import_key_material(
            KeyId=key_id,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=_wrap(params["PublicKey"], material),
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )

    def _make(
        self, state: KeyState, origin: str, alias: str | None = None, *, mrk: bool = False
    ) -> TestKey:
        """A new key in ``state``; a PendingReplicaDeletion one (and one made
        with ``mrk``) is a multi-Region primary, made by AWS KMS."""
        kms = self.kms
        params: dict[str, Any] = {"Origin": origin, "Description": f"{state.value} {origin}"}
        if mrk or state is PRD:
            assert origin == AWS_KMS
            params["MultiRegion"] = True
        meta = kms.create_key(**params)["KeyMetadata"]
        key_id = meta["KeyId"]
        material = None
        if state is PI:
            assert origin == EXTERNAL
            # Never had material, so never sealed anything: a real blob with
            # this key's id spliced over the key id (bytes 1..17).
            donor = self.healthy.blob
            blob = donor[:1] + uuid.UUID(key_id).bytes + donor[17:]
        else:
            if origin == EXTERNAL:
                material = os.urandom(32)
                self.import_material(key_id, material)
            blob = kms.encrypt(KeyId=key_id, Plaintext=b"state table", EncryptionContext=CONTEXT)[
                "CiphertextBlob"
            ]
        if alias is not None:
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        _drive(kms, key_id, state)
        key = TestKey(key_id, meta["Arn"], origin, state, blob, material)
        assert self.state_of(key) == state.value
        return key

    def typed(self, state: KeyState, spec: str, usage: str) -> TestKey:
        """A shared key of another kind (signing, MAC, key agreement, RSA
        encryption) in ``state``; ``blob`` holds a signature or MAC made while
        it was enabled. PendingImport keys are symmetric imports only, so
        there the shared PendingImport key stands in: its state answers first."""
        if state is PI:
            return self.shared[(PI, EXTERNAL)]
        cache = self.__dict__.setdefault("_typed", {})
        found = cache.get((state, spec, usage))
        if found is not None:
            return found  # type: ignore[no-any-return]
        kms = self.kms
        meta = kms.create_key(
            KeySpec=spec,
            KeyUsage=usage,
            Description=f"{state.value} {spec}",
            MultiRegion=state is PRD,
        )
        key_id = meta["KeyMetadata"]["KeyId"]
        blob = b""
        if usage == "SIGN_VERIFY":
            blob = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm=SIGNING[spec])["Signature"]
        elif usage == "GENERATE_VERIFY_MAC":
            blob = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        _drive(kms, key_id, state)
        key = TestKey(key_id, meta["KeyMetadata"]["Arn"], AWS_KMS, state, blob, None)
        cache[(state, spec, usage)] = key
        return key

    def state_of(self, key: TestKey) -> str:
        return str(self.kms.describe_key(KeyId=key.key_id)["KeyMetadata"]["KeyState"])

    # Which keys a case uses.

    def keys(self, state: KeyState) -> list[TestKey]:
        """The shared keys in ``state``, of every origin it exists in."""
        return [k for (s, _), k in self.shared.items() if s is state]

    def fresh(
        self, state: KeyState, origins: tuple[str, ...] = (AWS_KMS, EXTERNAL)
    ) -> list[TestKey]:
        """New keys in ``state``, for calls that change the key they touch."""
        if state is PI:
            origins = (EXTERNAL,)
        elif state is PRD:
            origins = (AWS_KMS,)  # imported material is single-Region here
        return [self._make(state, origin) for origin in origins]

    def fresh_aliased(self, state: KeyState) -> tuple[TestKey, str]:
        """A new key in ``state`` with an alias made while it could have one."""
        alias = _alias_name()
        origin = EXTERNAL if state is PI else AWS_KMS
        return self._make(state, origin, alias=alias), alias

    def external(self, state: KeyState) -> TestKey:
        """An imported-material key in ``state``; no multi-Region key has
        imported material here, so in PendingReplicaDeletion an AWS-made one
        stands in and its origin answers (ORIGIN_ANSWERS)."""
        return self.shared[(state, AWS_KMS if state is PRD else EXTERNAL)]

    def rotatable(self, state: KeyState) -> TestKey:
        """A key whose rotation settings only its state can refuse: made by
        AWS KMS, except in PendingImport, which only imported keys have."""
        return self.shared[(state, EXTERNAL if state is PI else AWS_KMS)]


def _drive(kms: Any, key_id: str, state: KeyState) -> None:
    """Move a new Enabled key to ``state`` (not PendingImport, which keys
    are made in)."""
    if state is D:
        kms.disable_key(KeyId=key_id)
    elif state is PD:
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    elif state is PRD:
        # A primary with a replica waits for the replica's deletion.
        kms.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        answer = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        assert answer["KeyState"] == PRD.value and "DeletionDate" not in answer


def _alias_name() -> str:
    return f"alias/state-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = Server(tmp_path_factory.mktemp("key-states") / "data").start()
    try:
        yield World(server)
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


# -- one valid request per (operation, state) --

Call = tuple[TestKey, Callable[[], Any]]


def _each(keys: list[TestKey], call: Callable[[TestKey], Any]) -> list[Call]:
    return [(k, lambda k=k: call(k)) for k in keys]


def _then_state(w: World, key: TestKey, call: Callable[[], Any], state: str) -> Callable[[], Any]:
    """``call``, and when it succeeded, the key it changed is in ``state``."""

    def run() -> Any:
        answer = call()
        assert w.state_of(key) == state
        return answer

    return run


def _encrypt(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.encrypt(KeyId=k.key_id, Plaintext=b"p"))


def _decrypt(w: World, s: KeyState) -> list[Call]:
    kms = w.kms
    return [
        *_each(w.keys(s), lambda k: kms.decrypt(CiphertextBlob=k.blob, EncryptionContext=CONTEXT)),
        *_each(
            w.keys(s),
            lambda k: kms.decrypt(CiphertextBlob=k.blob, EncryptionContext=CONTEXT, KeyId=k.arn),
        ),
    ]


def _re_encrypt(w: World, s: KeyState) -> list[Call]:
    kms, healthy = w.kms, w.healthy
    # The state rule holds for both keys of a ReEncrypt: the source and the destination.
    from_it = _each(
        w.keys(s),
        lambda k: kms.re_encrypt(
            CiphertextBlob=k.blob, SourceEncryptionContext=CONTEXT, DestinationKeyId=healthy.key_id
        ),
    )
    to_it = _each(
        w.keys(s),
        lambda k: kms.re_encrypt(
            CiphertextBlob=healthy.blob, SourceEncryptionContext=CONTEXT, DestinationKeyId=k.arn
        ),
    )
    return from_it + to_it


def _generate_data_key(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.generate_data_key(KeyId=k.key_id, KeySpec="AES_256"))


def _generate_data_key_without_plaintext(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s),
        lambda k: w.kms.generate_data_key_without_plaintext(KeyId=k.key_id, NumberOfBytes=64),
    )


def _describe_key(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.describe_key(KeyId=k.key_id))


def _get_key_policy(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.get_key_policy(KeyId=k.key_id, PolicyName="default"))


def _list_key_policies(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.list_key_policies(KeyId=k.key_id))


def _list_resource_tags(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.list_resource_tags(KeyId=k.key_id))


def _list_aliases(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.list_aliases(KeyId=k.key_id))


def _delete_alias(w: World, s: KeyState) -> list[Call]:
    # A PendingDeletion key cannot be given an alias: make it before scheduling.
    key, alias = w.fresh_aliased(s)
    return [(key, lambda: w.kms.delete_alias(AliasName=alias))]


def _enable_key(w: World, s: KeyState) -> list[Call]:
    return [
        (k, _then_state(w, k, lambda k=k: w.kms.enable_key(KeyId=k.key_id), "Enabled"))
        for k in w.fresh(s)
    ]


def _disable_key(w: World, s: KeyState) -> list[Call]:
    return [
        (k, _then_state(w, k, lambda k=k: w.kms.disable_key(KeyId=k.key_id), "Disabled"))
        for k in w.fresh(s)
    ]


def _update_key_description(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s), lambda k: w.kms.update_key_description(KeyId=k.key_id, Description="changed")
    )


def _tag_resource(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s),
        lambda k: w.kms.tag_resource(KeyId=k.key_id, Tags=[{"TagKey": "t", "TagValue": "v"}]),
    )


def _untag_resource(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.untag_resource(KeyId=k.key_id, TagKeys=["t"]))


def _create_alias(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s), lambda k: w.kms.create_alias(AliasName=_alias_name(), TargetKeyId=k.key_id)
    )


def _update_alias(w: World, s: KeyState) -> list[Call]:
    calls = []
    for key in w.keys(s):
        alias = _alias_name()
        w.kms.create_alias(AliasName=alias, TargetKeyId=w.healthy.key_id)
        calls.append(
            (key, lambda k=key, a=alias: w.kms.update_alias(AliasName=a, TargetKeyId=k.key_id))
        )
    return calls


def _enable_key_rotation(w: World, s: KeyState) -> list[Call]:
    return _each([w.rotatable(s)], lambda k: w.kms.enable_key_rotation(KeyId=k.key_id))


def _disable_key_rotation(w: World, s: KeyState) -> list[Call]:
    return _each([w.rotatable(s)], lambda k: w.kms.disable_key_rotation(KeyId=k.key_id))


def _get_key_rotation_status(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.get_key_rotation_status(KeyId=k.key_id))


def _rotate_key_on_demand(w: World, s: KeyState) -> list[Call]:
    # An imported key rotates on demand only to material imported for it
    # first: the AWS-made key is the one whose state alone decides.
    return _each([w.rotatable(s)], lambda k: w.kms.rotate_key_on_demand(KeyId=k.key_id))


def _list_key_rotations(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.list_key_rotations(KeyId=k.key_id))


def _get_key_last_usage(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.get_key_last_usage(KeyId=k.key_id))


def _schedule_key_deletion(w: World, s: KeyState) -> list[Call]:
    return [
        (
            k,
            _then_state(
                w,
                k,
                lambda k=k: w.kms.schedule_key_deletion(KeyId=k.key_id, PendingWindowInDays=7),
                "PendingDeletion",
            ),
        )
        for k in w.fresh(s)
    ]


def _cancel_key_deletion(w: World, s: KeyState) -> list[Call]:
    # Saved from deletion, a key with its material comes back Disabled.
    return [
        (k, _then_state(w, k, lambda k=k: w.kms.cancel_key_deletion(KeyId=k.key_id), "Disabled"))
        for k in w.fresh(s)
    ]


def _get_parameters_for_import(w: World, s: KeyState) -> list[Call]:
    return _each([w.external(s)], lambda k: w.params(k.key_id))


def _import_key_material(w: World, s: KeyState) -> list[Call]:
    (key,) = w.fresh(s, (EXTERNAL,))
    # The same material again for a key that has it; the first for one waiting.
    material = key.material if key.material is not None else os.urandom(32)
    if EXPECTED["GetParametersForImport"][s] is None:
        params = w.params(key.key_id)
        token, wrapped = params["ImportToken"], _wrap(params["PublicKey"], material)
    else:
        # No parameters in this state; the state is checked before the token.
        named = key.key_id.removeprefix("mrk-")
        token = b"\x01" + (uuid.UUID(named).bytes if named == key.key_id else bytes.fromhex(named))
        token += os.urandom(16)
        wrapped = os.urandom(256)
    after = "Disabled" if s is D else "Enabled"

    def call() -> Any:
        return w.kms.import_key_material(
            KeyId=key.key_id,
            ImportToken=token,
            EncryptedKeyMaterial=wrapped,
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )

    return [(key, _then_state(w, key, call, after))]


def _delete_imported_key_material(w: World, s: KeyState) -> list[Call]:
    (key,) = w.fresh(s, (EXTERNAL,))
    # Without its material a key waits for import, unless it is on its way out.
    after = "PendingDeletion" if s is PD else "PendingImport"
    call = lambda: w.kms.delete_imported_key_material(KeyId=key.key_id)  # noqa: E731
    return [(key, _then_state(w, key, call, after))]


def _sign(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, P256, "SIGN_VERIFY")
    return _each([key], lambda k: w.kms.sign(KeyId=k.key_id, Message=b"m",
                                             SigningAlgorithm="ECDSA_SHA_256"))  # fmt: skip


def _verify(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, P256, "SIGN_VERIFY")
    return _each(
        [key],
        lambda k: w.kms.verify(
            KeyId=k.key_id, Message=b"m", Signature=k.blob or b"x" * 64,
            SigningAlgorithm="ECDSA_SHA_256",
        ),
    )  # fmt: skip


def _get_public_key(w: World, s: KeyState) -> list[Call]:
    return _each([w.typed(s, P256, "SIGN_VERIFY")], lambda k: w.kms.get_public_key(KeyId=k.key_id))


def _generate_mac(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, "HMAC_256", "GENERATE_VERIFY_MAC")
    return _each(
        [key],
        lambda k: w.kms.generate_mac(KeyId=k.key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256"),
    )


def _verify_mac(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, "HMAC_256", "GENERATE_VERIFY_MAC")
    return _each(
        [key],
        lambda k: w.kms.verify_mac(
            KeyId=k.key_id, Message=b"m", Mac=k.blob or b"x" * 32, MacAlgorithm="HMAC_SHA_256"
        ),
    )


def _derive_shared_secret(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, P256, "KEY_AGREEMENT")
    peer = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return _each(
        [key],
        lambda k: w.kms.derive_shared_secret(
            KeyId=k.key_id, KeyAgreementAlgorithm="ECDH", PublicKey=peer
        ),
    )


def _encapsulate(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, "ML_KEM_512", "ENCAPSULATE_DECAPSULATE")
    return _each(
        [key], lambda k: w.kms.encapsulate(KeyId=k.key_id, EncapsulationAlgorithm="ML_KEM")
    )


def _decapsulate(w: World, s: KeyState) -> list[Call]:
    key = w.typed(s, "ML_KEM_512", "ENCAPSULATE_DECAPSULATE")
    # Any ML-KEM-512 ciphertext of the right length decapsulates (implicit rejection).
    return _each(
        [key],
        lambda k: w.kms.decapsulate(
            KeyId=k.key_id,
            SharedSecretCiphertextBlob=b"\x01" * 768,
            EncapsulationAlgorithm="ML_KEM",
        ),
    )


def _generate_data_key_pair(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s),
        lambda k: w.kms.generate_data_key_pair(KeyId=k.key_id, KeyPairSpec=P256),
    )


def _generate_data_key_pair_without_plaintext(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s),
        lambda k: w.kms.generate_data_key_pair_without_plaintext(KeyId=k.key_id, KeyPairSpec=P256),
    )


def _put_key_policy(w: World, s: KeyState) -> list[Call]:
    def put(k: TestKey) -> Any:
        policy = w.kms.get_key_policy(KeyId=k.key_id)["Policy"]
        return w.kms.put_key_policy(KeyId=k.key_id, Policy=policy)

    return _each(w.keys(s), put)


def _grantee(key: TestKey) -> str:
    return f"arn:aws:iam::{key.arn.split(':')[4]}:root"


def _create_grant(w: World, s: KeyState) -> list[Call]:
    return _each(
        w.keys(s),
        lambda k: w.kms.create_grant(
            KeyId=k.key_id, GranteePrincipal=_grantee(k), Operations=["Decrypt"]
        ),
    )


def _list_grants(w: World, s: KeyState) -> list[Call]:
    return _each(w.keys(s), lambda k: w.kms.list_grants(KeyId=k.key_id))


def _granted(w: World, s: KeyState) -> tuple[TestKey, str]:
    """A new key in ``s`` with a grant made while it was enabled (grants are
    made only then): the key, and the grant's id."""
    key = w._make(E, EXTERNAL if s is PI else AWS_KMS, mrk=s is PRD)
    grant_id = w.kms.create_grant(
        KeyId=key.key_id, GranteePrincipal=_grantee(key), Operations=["Decrypt"]
    )["GrantId"]
    if s is PI:
        w.kms.delete_imported_key_material(KeyId=key.key_id)
    else:
        _drive(w.kms, key.key_id, s)
    key = dataclasses.replace(key, state=s)
    assert w.state_of(key) == s.value
    return key, grant_id


def _retire_grant(w: World, s: KeyState) -> list[Call]:
    key, grant_id = _granted(w, s)
    return [(key, lambda: w.kms.retire_grant(KeyId=key.arn, GrantId=grant_id))]


def _revoke_grant(w: World, s: KeyState) -> list[Call]:
    key, grant_id = _granted(w, s)
    return [(key, lambda: w.kms.revoke_grant(KeyId=key.key_id, GrantId=grant_id))]


def _mrk_primary(w: World, s: KeyState, replica: str | None = None) -> TestKey:
    """A new multi-Region primary key in ``s``, replicated to ``replica``
    first if given (a primary with a replica scheduled for deletion waits in
    PendingReplicaDeletion, so a PendingDeletion one has none). No
    multi-Region key waits for imported material here (MultiRegion with
    Origin EXTERNAL is refused): the shared single-Region PendingImport key
    stands in, and answers for what it is (ORIGIN_ANSWERS)."""
    if s is PI:
        return w.shared[(PI, EXTERNAL)]
    if s is PRD:
        return w._make(PRD, AWS_KMS)  # replicated to WEST by its making
    kms = w.kms
    meta = kms.create_key(MultiRegion=True, Description=f"{s.value} primary")["KeyMetadata"]
    key_id = meta["KeyId"]
    if replica is not None:
        kms.replicate_key(KeyId=key_id, ReplicaRegion=replica)
    assert s is not PD or replica is None
    _drive(kms, key_id, s)
    key = TestKey(key_id, meta["Arn"], AWS_KMS, s, b"", None)
    assert w.state_of(key) == s.value
    return key


def _replicate_key(w: World, s: KeyState) -> list[Call]:
    return _each(
        [_mrk_primary(w, s)], lambda k: w.kms.replicate_key(KeyId=k.key_id, ReplicaRegion=WEST)
    )


def _update_primary_region(w: World, s: KeyState) -> list[Call]:
    key = _mrk_primary(w, s, None if s in (PD, PI, PRD) else WEST)
    # Its state answers before the missing replica of a PendingDeletion one.
    return _each([key], lambda k: w.kms.update_primary_region(KeyId=k.key_id, PrimaryRegion=WEST))


CASES: dict[str, Callable[[World, KeyState], list[Call]]] = {
    "Encrypt": _encrypt,
    "Decrypt": _decrypt,
    "ReEncrypt": _re_encrypt,
    "GenerateDataKey": _generate_data_key,
    "GenerateDataKeyWithoutPlaintext": _generate_data_key_without_plaintext,
    "DescribeKey": _describe_key,
    "GetKeyPolicy": _get_key_policy,
    "ListKeyPolicies": _list_key_policies,
    "ListResourceTags": _list_resource_tags,
    "ListAliases": _list_aliases,
    "DeleteAlias": _delete_alias,
    "EnableKey": _enable_key,
    "DisableKey": _disable_key,
    "UpdateKeyDescription": _update_key_description,
    "TagResource": _tag_resource,
    "UntagResource": _untag_resource,
    "CreateAlias": _create_alias,
    "UpdateAlias": _update_alias,
    "EnableKeyRotation": _enable_key_rotation,
    "DisableKeyRotation": _disable_key_rotation,
    "GetKeyRotationStatus": _get_key_rotation_status,
    "RotateKeyOnDemand": _rotate_key_on_demand,
    "ListKeyRotations": _list_key_rotations,
    "GetKeyLastUsage": _get_key_last_usage,
    "ScheduleKeyDeletion": _schedule_key_deletion,
    "CancelKeyDeletion": _cancel_key_deletion,
    "GetParametersForImport": _get_parameters_for_import,
    "ImportKeyMaterial": _import_key_material,
    "DeleteImportedKeyMaterial": _delete_imported_key_material,
    "PutKeyPolicy": _put_key_policy,
    "Sign": _sign,
    "Verify": _verify,
    "GetPublicKey": _get_public_key,
    "GenerateMac": _generate_mac,
    "VerifyMac": _verify_mac,
    "DeriveSharedSecret": _derive_shared_secret,
    "GenerateDataKeyPair": _generate_data_key_pair,
    "GenerateDataKeyPairWithoutPlaintext": _generate_data_key_pair_without_plaintext,
    "CreateGrant": _create_grant,
    "ListGrants": _list_grants,
    "RetireGrant": _retire_grant,
    "RevokeGrant": _revoke_grant,
    "ReplicateKey": _replicate_key,
    "UpdatePrimaryRegion": _update_primary_region,
    "Encapsulate": _encapsulate,
    "Decapsulate": _decapsulate,
}

# Every (operation, state) pair of keycask's table: the parametrization below
# is exactly this list, so every pair is exercised.
PAIRS = [(operation, state) for operation in sorted(ALLOWED_STATES) for state in REACHABLE]


def test_every_pair_has_a_case() -> None:
    assert set(ALLOWED_STATES) == set(EXPECTED) == set(CASES)
    # A new state fails here until it is reachable (add it to REACHABLE with
    # a way to drive keys into it) or named as not yet reachable.
    assert set(KeyState) == {*REACHABLE, *MULTI_REGION}
    assert len(PAIRS) == len(ALLOWED_STATES) * len(REACHABLE)


def _describe_answer(expected: type[Exception] | None) -> str:
    return "success" if expected is None else expected.__name__


# Cells where AWS's table answers for the key's origin, not its state: only
# imported keys are ever PendingImport, and they have no automatic rotation
# (footnote 6 of AWS's table: "origin is EXTERNAL which is not valid for this
# operation").
ORIGIN_ANSWERS = {
    ("EnableKeyRotation", PI): "UnsupportedOperationException",
    ("DisableKeyRotation", PI): "UnsupportedOperationException",
    # PendingImport keys are symmetric here, and a symmetric key has no public key.
    ("GetPublicKey", PI): "UnsupportedOperationException",
    # No multi-Region key is ever PendingImport here (_mrk_primary): the
    # single-Region key that stands in is refused for what it is.
    ("ReplicateKey", PI): "UnsupportedOperationException",
    ("UpdatePrimaryRegion", PI): "UnsupportedOperationException",
    # No multi-Region key has imported material here (World.external).
    ("GetParametersForImport", PRD): "UnsupportedOperationException",
    ("ImportKeyMaterial", PRD): "UnsupportedOperationException",
    ("DeleteImportedKeyMaterial", PRD): "UnsupportedOperationException",
}


@pytest.mark.parametrize(
    ("operation", "state"), PAIRS, ids=[f"{op}-{state.value}" for op, state in PAIRS]
)
def test_state_rule(world: World, operation: str, state: KeyState) -> None:
    expected = EXPECTED[operation][state]
    answer = ORIGIN_ANSWERS.get((operation, state)) or _describe_answer(expected)
    calls = CASES[operation](world, state)
    assert calls, f"no request made for {operation} on a {state.value} key"
    for key, call in calls:
        assert key.state is state
        what = f"{operation} on a {key.state.value} {key.origin} key"
        try:
            call()
        except ClientError as error:
            code = error.response["Error"]["Code"]
            message = error.response["Error"]["Message"]
            assert code == answer, f"{what}: expected {answer}, got {code}: {message}"
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert key.arn in message, f"{what}: the message does not name the key: {message}"
        else:
            assert answer == "success", f"{what}: expected {answer}, got success"
    # The shared keys are where they were put.
    for shared in (world.healthy, *world.shared.values()):
        assert world.state_of(shared) == shared.state.value, (
            f"{operation} on a {state.value} key moved {shared.origin} key "
            f"{shared.key_id} out of {shared.state.value}"
        )
