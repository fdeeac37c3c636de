"""Custom key stores of type AWS_CLOUDHSM through boto3, against a real
keycask server configured with a real SoftHSM2 token (issue 19): the store's
life, keys generated and used inside the token, what the token and the store
hold, a disconnected store and a missing token, restarts, deletion, and the
refusals AWS documents."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError
from pkcs11 import Attribute, ObjectClass
from production import (
    SOFTHSM_TOKEN,
    Production,
    SoftHsm,
    pkcs11_flags,
    secret_file,
    softhsm_session,
)

from conftest import DAY, Server

CLUSTER = "cluster-keycaskhsm234"
PIN = "hsm-pin-5678"  # KeyStorePassword takes 7 to 32 characters
ANCHOR = "trust-anchor.pem"
STORE_OPERATIONS = (
    "CreateCustomKeyStore",
    "DescribeCustomKeyStores",
    "UpdateCustomKeyStore",
    "ConnectCustomKeyStore",
    "DisconnectCustomKeyStore",
    "DeleteCustomKeyStore",
)


def _certificate(directory: Path) -> str:
    """A PEM certificate to give as TrustAnchorCertificate (openssl, as an
    operator would make or copy one)."""
    key, cert = directory / "anchor.key", directory / ANCHOR
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=hsm"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert.read_text()


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    return SoftHsm(tmp_path / "softhsm", pin=PIN)


@pytest.fixture
def server(tmp_path: Path, hsm: SoftHsm) -> Iterator[Server]:
    pin_file = secret_file(tmp_path / "pin", PIN)
    server = Server(
        tmp_path / "data",
        args=("--hsm", f"{CLUSTER}={hsm.module}:{SOFTHSM_TOKEN}", "--hsm-pin-file", str(pin_file)),
        env_extra={"SOFTHSM2_CONF": str(hsm.conf)},
    )
    server.start()
    yield server
    if server.proc is not None:
        server.stop()


@pytest.fixture
def anchor(tmp_path: Path) -> str:
    return _certificate(tmp_path)


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def _create_store(kms: Any, anchor: str, name: str = "hsm-store", password: str = PIN) -> str:
    return str(
        kms.create_custom_key_store(
            CustomKeyStoreName=name,
            CloudHsmClusterId=CLUSTER,
            TrustAnchorCertificate=anchor,
            KeyStorePassword=password,
        )["CustomKeyStoreId"]
    )


def _store(kms: Any, store_id: str) -> dict[str, Any]:
    (entry,) = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    return dict(entry)


def _connected_key(kms: Any, anchor: str) -> tuple[str, str]:
    store_id = _create_store(kms, anchor)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    key = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")["KeyMetadata"]
    return store_id, str(key["KeyId"])


def _token_keys(hsm: SoftHsm) -> dict[bytes, dict[str, Any]]:
    """Every secret key in the token, by CKA_ID, with what PKCS#11 says of it."""
    found = {}
    with softhsm_session(hsm) as session:
        for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            found[bytes(key[Attribute.ID])] = {
                attribute: key[attribute]
                for attribute in (
                    Attribute.TOKEN,
                    Attribute.SENSITIVE,
                    Attribute.EXTRACTABLE,
                    Attribute.NEVER_EXTRACTABLE,
                    Attribute.WRAP,
                    Attribute.UNWRAP,
                    Attribute.VALUE_LEN,
                )
            }
    return found


def _stored_paths(server: Server) -> list[str]:
    with sqlite3.connect(server.data_dir / "keycask.db") as db:
        return [path for (path,) in db.execute("SELECT path FROM kv")]


def test_store_lifecycle(server: Server, anchor: str) -> None:
    kms = server.client()
    store_id = _create_store(kms, anchor)
    assert store_id.startswith("cks-") and len(store_id) == 21
    entry = _store(kms, store_id)
    assert entry["CustomKeyStoreName"] == "hsm-store"
    assert entry["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert entry["CloudHsmClusterId"] == CLUSTER
    assert entry["TrustAnchorCertificate"] == anchor
    assert entry["ConnectionState"] == "DISCONNECTED"
    assert "ConnectionErrorCode" not in entry and "KeyStorePassword" not in json.dumps(
        entry, default=str
    )
    by_name = kms.describe_custom_key_stores(CustomKeyStoreName="hsm-store")["CustomKeyStores"]
    assert [e["CustomKeyStoreId"] for e in by_name] == [store_id]

    # Keys only in a connected store.
    with pytest.raises(ClientError) as error:
        kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")
    assert _code(error) == "CustomKeyStoreInvalidStateException"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert _store(kms, store_id)["ConnectionState"] == "CONNECTED"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)  # connected already: no change

    # While connected only the name may change; nor can it be deleted.
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="renamed")
    assert _store(kms, store_id)["CustomKeyStoreName"] == "renamed"
    with pytest.raises(ClientError) as error:
        kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword="another-pin")
    assert _code(error) == "CustomKeyStoreInvalidStateException"
    with pytest.raises(ClientError) as error:
        kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    assert _code(error) == "CustomKeyStoreInvalidStateException"

    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert _store(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    with pytest.raises(ClientError) as error:
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert _code(error) == "CustomKeyStoreInvalidStateException"
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    with pytest.raises(ClientError) as error:
        _store(kms, store_id)
    assert _code(error) == "CustomKeyStoreNotFoundException"
    # The token is free again for a new store.
    assert _create_store(kms, anchor) != store_id
    operations = [
        json.loads(line)["operation"]
        for line in (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    ]
    for name in STORE_OPERATIONS:
        assert name in operations
    assert PIN not in (server.data_dir / "audit" / "server.jsonl").read_text()


def test_hsm_key_encrypts_inside_the_token(server: Server, hsm: SoftHsm, anchor: str) -> None:
    kms = server.client()
    store_id, key_id = _connected_key(kms, anchor)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["Origin"] == "AWS_CLOUDHSM"
    assert meta["CustomKeyStoreId"] == store_id
    assert meta["CloudHsmClusterId"] == CLUSTER
    assert meta["KeyState"] == "Enabled" and meta["KeySpec"] == "SYMMETRIC_DEFAULT"

    blob = kms.encrypt(KeyId=key_id, Plaintext=b"inside", EncryptionContext={"a": "b"})[
        "CiphertextBlob"
    ]
    assert blob[0] == 0x03
    opened = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert opened["Plaintext"] == b"inside" and opened["KeyId"] == meta["Arn"]
    with pytest.raises(ClientError) as error:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "c"})
    assert _code(error) == "InvalidCiphertextException"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(ClientError) as error:
        kms.decrypt(CiphertextBlob=tampered, EncryptionContext={"a": "b"})
    assert _code(error) == "InvalidCiphertextException"

    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert (
        kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    )
    no_plain = kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=16)
    assert len(kms.decrypt(CiphertextBlob=no_plain["CiphertextBlob"])["Plaintext"]) == 16
    # ReEncrypt both ways between an HSM key and an ordinary one.
    plain_key = kms.create_key()["KeyMetadata"]["KeyId"]
    moved = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"a": "b"},
        DestinationKeyId=plain_key,
    )["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=moved)["Plaintext"] == b"inside"
    back = kms.re_encrypt(CiphertextBlob=moved, DestinationKeyId=key_id)["CiphertextBlob"]
    assert back[0] == 0x03 and kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"inside"

    # The key is in the token, sensitive and never extractable...
    (attributes,) = [a for i, a in _token_keys(hsm).items()]
    assert attributes[Attribute.TOKEN] is True
    assert attributes[Attribute.SENSITIVE] is True
    assert attributes[Attribute.EXTRACTABLE] is False
    assert attributes[Attribute.NEVER_EXTRACTABLE] is True
    assert attributes[Attribute.WRAP] is False and attributes[Attribute.UNWRAP] is False
    assert attributes[Attribute.VALUE_LEN] == 32
    # ...and keycask's store holds no material for it, only for the other key.
    paths = _stored_paths(server)
    assert not [p for p in paths if p.startswith(f"mat/{key_id}/")]
    assert [p for p in paths if p.startswith(f"mat/{plain_key}/")]
    assert f"cksidx/{store_id}/{key_id}" in paths

    # No rotation for keys of custom key stores, as in AWS.
    for call in (kms.enable_key_rotation, kms.rotate_key_on_demand):
        with pytest.raises(ClientError) as error:
            call(KeyId=key_id)
        assert _code(error) == "UnsupportedOperationException"


def test_pkcs11_tool_shows_the_key_sensitive_and_not_extractable(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool is not installed: run `make opensc` or install opensc")
    kms = server.client()
    _, key_id = _connected_key(kms, anchor)
    listing = subprocess.run(
        [tool, "--module", hsm.module, "--token-label", SOFTHSM_TOKEN, "--login", "--pin", PIN,
         "--list-objects", "--type", "secrkey"],
        check=True, capture_output=True, text=True, env={"SOFTHSM2_CONF": str(hsm.conf)},
    ).stdout  # fmt: skip
    assert "Secret Key Object; AES length 32" in listing
    (access,) = [line for line in listing.splitlines() if line.strip().startswith("Access:")]
    flags = {flag.strip() for flag in access.split(":", 1)[1].split(",")}
    assert {"sensitive", "always sensitive", "never extractable"} <= flags
    assert "extractable" not in flags
    (usage,) = [line for line in listing.splitlines() if line.strip().startswith("Usage:")]
    assert "wrap" not in usage
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_disconnect_makes_keys_unavailable_and_connect_brings_them_back(
    server: Server, anchor: str
) -> None:
    kms = server.client()
    store_id, key_id = _connected_key(kms, anchor)
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    for call in (
        lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x"),
        lambda: kms.decrypt(CiphertextBlob=blob),
        lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert _code(error) == "KMSInvalidStateException"
    # Other keys are unaffected.
    assert (
        kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=other, Plaintext=b"y")["CiphertextBlob"])[
            "Plaintext"
        ]
        == b"y"
    )
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_restart_keeps_everything_and_a_missing_token_makes_keys_unavailable(
    server: Server, hsm: SoftHsm, anchor: str, tmp_path: Path
) -> None:
    kms = server.client()
    store_id, key_id = _connected_key(kms, anchor)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"kept")["CiphertextBlob"]
    server.restart()
    kms = server.client()
    assert _store(kms, store_id)["ConnectionState"] == "CONNECTED"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"

    # The token gone (the server now looks in an empty token directory).
    empty = tmp_path / "empty"
    (empty / "tokens").mkdir(parents=True)
    (empty / "softhsm2.conf").write_text(
        f"directories.tokendir = {empty / 'tokens'}\nobjectstore.backend = file\n"
    )
    server.stop()
    server.env_extra["SOFTHSM2_CONF"] = str(empty / "softhsm2.conf")
    server.start()
    kms = server.client()
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    entry = _store(kms, store_id)
    assert (entry["ConnectionState"], entry["ConnectionErrorCode"]) == ("FAILED", "NETWORK_ERRORS")
    with pytest.raises(ClientError) as error:
        kms.decrypt(CiphertextBlob=blob)
    assert _code(error) == "KMSInvalidStateException"
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    assert kms.encrypt(KeyId=other, Plaintext=b"fine")["KeyId"].endswith(other)

    # The token back: the key serves again, with no reconnection.
    server.stop()
    server.env_extra["SOFTHSM2_CONF"] = str(hsm.conf)
    server.start()
    kms = server.client()
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


def test_wrong_password_fails_the_connection(server: Server, anchor: str) -> None:
    kms = server.client()
    store_id = _create_store(kms, anchor, password="not-the-pin")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)  # answered at once, as AWS does
    entry = _store(kms, store_id)
    assert (entry["ConnectionState"], entry["ConnectionErrorCode"]) == (
        "FAILED", "INVALID_CREDENTIALS",
    )  # fmt: skip
    # A FAILED store is disconnected before it is connected again.
    with pytest.raises(ClientError) as error:
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert _code(error) == "CustomKeyStoreInvalidStateException"
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=PIN)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert _store(kms, store_id)["ConnectionState"] == "CONNECTED"


def test_deletion_destroys_the_token_object_and_frees_the_store(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    kms = server.client()
    store_id, key_id = _connected_key(kms, anchor)
    assert len(_token_keys(hsm)) == 1
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    with pytest.raises(ClientError) as error:
        kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    assert _code(error) == "CustomKeyStoreHasCMKsException"  # pending deletion still counts
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    server.advance_clock(8 * DAY)
    with pytest.raises(ClientError) as error:
        kms.describe_key(KeyId=key_id)
    assert _code(error) == "NotFoundException"
    assert _token_keys(hsm) == {}
    records = [
        json.loads(line)
        for line in (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    ]
    (deleted,) = [r for r in records if r["operation"] == "DeleteKey"]
    assert "HSM key" in deleted["detail"] and "destroyed" in deleted["detail"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)


def test_refusals(server: Server, anchor: str) -> None:
    kms = server.client()
    for kwargs, code in (
        ({"CloudHsmClusterId": "cluster-unknownhsm22"}, "CloudHsmClusterNotFoundException"),
        ({"TrustAnchorCertificate": "not a certificate"}, "IncorrectTrustAnchorException"),
        ({"XksProxyUriPath": "/kms/xks/v1"}, "ValidationException"),
        ({"CustomKeyStoreType": "EXTERNAL_KEY_STORE"}, "ValidationException"),
    ):
        request = {
            "CustomKeyStoreName": f"refused-{uuid.uuid4().hex[:6]}",
            "CloudHsmClusterId": CLUSTER,
            "TrustAnchorCertificate": anchor,
            "KeyStorePassword": PIN,
            **kwargs,
        }
        with pytest.raises(ClientError) as error:
            kms.create_custom_key_store(**request)
        assert _code(error) == code, (kwargs, error.value)
    without_anchor = {
        "CustomKeyStoreName": "a",
        "CloudHsmClusterId": CLUSTER,
        "KeyStorePassword": PIN,
    }
    with pytest.raises(ClientError) as error:
        kms.create_custom_key_store(**without_anchor)
    assert _code(error) == "ValidationException"
    store_id = _create_store(kms, anchor)
    with pytest.raises(ClientError) as error:
        _create_store(kms, anchor)  # the same name
    assert _code(error) == "CustomKeyStoreNameInUseException"
    with pytest.raises(ClientError) as error:
        _create_store(kms, anchor, name="second")  # the same token
    assert _code(error) == "CloudHsmClusterInUseException"
    # Hostile ids and names, wrong types: the model's answers, never a 500.
    for bad in ("cks-0000000000000000z", "x" * 64, "../cks", "cks-00000000000000000"):
        with pytest.raises(ClientError) as error:
            kms.describe_custom_key_stores(CustomKeyStoreId=bad)
        assert _code(error) == "CustomKeyStoreNotFoundException"
        with pytest.raises(ClientError) as error:
            kms.connect_custom_key_store(CustomKeyStoreId=bad)
        assert _code(error) == "CustomKeyStoreNotFoundException"
        with pytest.raises(ClientError) as error:
            kms.create_key(CustomKeyStoreId=bad, Origin="AWS_CLOUDHSM")
        assert _code(error) == "CustomKeyStoreNotFoundException"
    for kwargs in (
        {"CustomKeyStoreName": "n" * 257},
        {"CustomKeyStoreName": ""},
        {"CustomKeyStoreName": "n", "KeyStorePassword": "short"},
        {"CustomKeyStoreName": "n", "CloudHsmClusterId": "cluster-1"},
        {"CustomKeyStoreName": "n", "CustomKeyStoreType": "OTHER"},
    ):
        with pytest.raises((ClientError, ParamValidationError)):
            kms.create_custom_key_store(**kwargs)
    with pytest.raises(ClientError) as error:
        kms.describe_custom_key_stores(CustomKeyStoreId="x" * 65)
    assert _code(error) == "ValidationException"
    with pytest.raises(ClientError) as error:
        kms.describe_custom_key_stores(Marker="not-a-marker")
    assert _code(error) == "InvalidMarkerException"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    for kwargs in (
        {"CustomKeyStoreId": store_id},  # Origin AWS_CLOUDHSM is needed
        {"Origin": "AWS_CLOUDHSM"},  # and a store
    ):
        with pytest.raises(ClientError) as error:
            kms.create_key(**kwargs)
        assert _code(error) == "ValidationException"
    with pytest.raises(ClientError) as error:
        kms.create_key(
            CustomKeyStoreId=store_id,
            Origin="AWS_CLOUDHSM",
            KeySpec="RSA_2048",
            KeyUsage="SIGN_VERIFY",
        )
    assert _code(error) == "UnsupportedOperationException"


def test_a_principal_without_permission_is_refused(server: Server, anchor: str) -> None:
    created = json.loads(server.cli("principals", "create", "nobody", "--json").stdout)
    user = server.client((created["AccessKeyId"], created["SecretAccessKey"]))
    kms = server.client()
    store_id = _create_store(kms, anchor)
    for call in (
        lambda: _create_store(user, anchor, name="theirs"),
        lambda: user.describe_custom_key_stores(),
        lambda: user.connect_custom_key_store(CustomKeyStoreId=store_id),
        lambda: user.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="x"),
        lambda: user.disconnect_custom_key_store(CustomKeyStoreId=store_id),
        lambda: user.delete_custom_key_store(CustomKeyStoreId=store_id),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert _code(error) == "AccessDeniedException"
    assert _store(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    # An identity policy allowing the account-level action lets it describe.
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:DescribeCustomKeyStores", "Resource": "*"}]}  # fmt: skip
    path = server.data_dir.parent / "describe.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", "nobody", "--policy-name", "d", "--file", str(path))
    assert [
        e["CustomKeyStoreId"] for e in user.describe_custom_key_stores()["CustomKeyStores"]
    ] == [store_id]


def test_generate_random_from_the_store(server: Server, anchor: str) -> None:
    kms = server.client()
    store_id = _create_store(kms, anchor)
    with pytest.raises(ClientError) as error:
        kms.generate_random(NumberOfBytes=16, CustomKeyStoreId=store_id)
    assert _code(error) == "CustomKeyStoreInvalidStateException"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    first = kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]
    second = kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]
    assert len(first) == 32 and first != second
    with pytest.raises(ClientError) as error:
        kms.generate_random(NumberOfBytes=16, CustomKeyStoreId="cks-0123456789abcdef0")
    assert _code(error) == "CustomKeyStoreNotFoundException"


def test_the_seal_token_is_refused_for_hsm_keys(tmp_path: Path, hsm: SoftHsm) -> None:
    """PKCS#11 logins are the process's: the token holding the seal's key
    cannot also serve HSM-backed keys (the server says so and stops)."""
    pin_file = secret_file(tmp_path / "seal-pin", PIN)
    prod = Production(tmp_path / "prod", extra_env=hsm.env())
    prod.initialise("--seal", "pkcs11", *pkcs11_flags(hsm, "root-key", pin_file))
    hsm_flags = (
        "--hsm",
        f"{CLUSTER}={hsm.module}:{SOFTHSM_TOKEN}",
        "--hsm-pin-file",
        str(pin_file),
    )
    prod.start(*hsm_flags, expect_exit=True, env={"KEYCASK_PKCS11_PIN": PIN})
    assert prod.proc is not None
    code = prod.proc.wait(timeout=30)
    prod.proc = None
    assert code != 0
    assert "holds the PKCS#11 seal's key" in prod.log()
    assert PIN not in prod.log()


def test_another_account_sees_no_store_and_cannot_take_the_token(
    server: Server, anchor: str
) -> None:
    kms = server.client()
    store_id, key_id = _connected_key(kms, anchor)
    made = json.loads(
        server.cli(
            "principals",
            "create",
            "outsider",
            "--json",
            "--admin",
            "--account",
            "333344445555",
            "--offline",
        ).stdout
    )
    outsider = server.client((made["AccessKeyId"], made["SecretAccessKey"]))
    assert outsider.describe_custom_key_stores()["CustomKeyStores"] == []
    for call in (
        lambda: outsider.describe_custom_key_stores(CustomKeyStoreId=store_id),
        lambda: outsider.disconnect_custom_key_store(CustomKeyStoreId=store_id),
        lambda: outsider.delete_custom_key_store(CustomKeyStoreId=store_id),
        lambda: outsider.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM"),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert _code(error) == "CustomKeyStoreNotFoundException"
    # The token serves the operator's account: to any other it is not there
    # at all (not even "in use"), so none can claim it or try its PIN.
    with pytest.raises(ClientError) as error:
        _create_store(outsider, anchor, name="theirs")
    assert _code(error) == "CloudHsmClusterNotFoundException"
    assert _store(kms, store_id)["ConnectionState"] == "CONNECTED"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_worker_processes_share_the_token(tmp_path: Path, hsm: SoftHsm, anchor: str) -> None:
    """With --workers each process logs in to the token itself (the flags
    reach every worker); a key one process made, another uses."""
    pin_file = secret_file(tmp_path / "workers-pin", PIN)
    server = Server(
        tmp_path / "workers",
        workers=2,
        args=("--hsm", f"{CLUSTER}={hsm.module}:{SOFTHSM_TOKEN}", "--hsm-pin-file", str(pin_file)),
        env_extra={"SOFTHSM2_CONF": str(hsm.conf)},
    )
    server.start()
    try:
        _, key_id = _connected_key(server.client(), anchor)
        blobs = []
        for i in range(12):  # new connections: both workers answer some
            kms = server.client()
            blobs.append(kms.encrypt(KeyId=key_id, Plaintext=b"%d" % i)["CiphertextBlob"])
        for i, blob in enumerate(blobs):
            assert server.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"%d" % i
        segments = list((server.data_dir / "audit").glob("server-*.jsonl"))
        served = {
            segment.name
            for segment in segments
            if any(json.loads(line)["operation"] == "Decrypt"
                   for line in segment.read_text().splitlines())
        }  # fmt: skip
        assert len(served) == 2, served
    finally:
        server.stop()
