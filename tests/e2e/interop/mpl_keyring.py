"""The AWS Encryption SDK 4.x with keycask keys in KEYRINGS, run by the
Material Providers Library's own venv (.venv/interop/mpl/bin/python).

Why a separate program: the MPL pins ``cryptography`` below the release
keycask is tested with, so it cannot be imported by the test process; the
test runs this file as a subprocess in the venv ``make interop`` builds.

Usage (credentials come from the usual AWS chain of the environment, e.g.
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; never from argv):

    mpl_keyring.py ENDPOINT encrypt --key ARN [--key ARN2]... [--context K=V]... IN OUT
    mpl_keyring.py - encrypt --key ARN [--key ARN2]... [--context K=V]... IN OUT
    mpl_keyring.py ENDPOINT decrypt (--key ARN | --discovery-account ACCOUNT)
                   [--context K=V]... IN OUT
    mpl_keyring.py ENDPOINT decrypt --mrk-aware (--key ARN | --discovery-account
                   ACCOUNT --region REGION) [--context K=V]... IN OUT

``encrypt`` with one key uses an AwsKmsKeyring; with several, a multi-keyring
whose generator is the first key and whose children are the others (any one
of them decrypts). ``decrypt --key`` uses an AwsKmsKeyring, ``decrypt
--discovery-account`` an AwsKmsDiscoveryKeyring limited to that account in
the ``aws`` partition. ``--context`` on decrypt is the context the message
must carry (the SDK checks it). Every KMS client is built with
``endpoint_url``, the only change an application needs; with ENDPOINT ``-``,
``encrypt`` instead uses create_aws_kms_multi_keyring and its default client
supplier, which builds its own clients and so finds keycask only through
the environment (AWS_ENDPOINT_URL_KMS) or the profile.

``--mrk-aware`` decrypts with the multi-Region-aware keyrings instead
(AwsKmsMrkKeyring for ``--key``, AwsKmsMrkDiscoveryKeyring in ``--region``
for ``--discovery-account``): a message whose data key was wrapped by a
multi-Region key in one region decrypts with its replica in another.

Exit 0 on success; on failure one line ``mpl_keyring: <ErrorClass>: <why>``
on stderr and exit 1, so the caller can assert which error it was.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import boto3
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import (
    CreateAwsKmsDiscoveryKeyringInput,
    CreateAwsKmsKeyringInput,
    CreateAwsKmsMrkDiscoveryKeyringInput,
    CreateAwsKmsMrkKeyringInput,
    CreateAwsKmsMultiKeyringInput,
    CreateMultiKeyringInput,
    DiscoveryFilter,
)
from aws_encryption_sdk import CommitmentPolicy, EncryptionSDKClient


def _kms(endpoint: str, region: str) -> Any:
    return boto3.client("kms", endpoint_url=endpoint, region_name=region)


def _region(arn: str) -> str:
    return arn.split(":")[3] if arn.startswith("arn:") else "us-east-1"


def _keyring(mpl: Any, endpoint: str, arn: str) -> Any:
    return mpl.create_aws_kms_keyring(
        input=CreateAwsKmsKeyringInput(kms_key_id=arn, kms_client=_kms(endpoint, _region(arn)))
    )


def _encrypt_keyring(mpl: Any, endpoint: str, keys: list[str]) -> Any:
    if endpoint == "-":
        return mpl.create_aws_kms_multi_keyring(
            input=CreateAwsKmsMultiKeyringInput(generator=keys[0], kms_key_ids=keys[1:])
        )
    if len(keys) == 1:
        return _keyring(mpl, endpoint, keys[0])
    return mpl.create_multi_keyring(
        input=CreateMultiKeyringInput(
            generator=_keyring(mpl, endpoint, keys[0]),
            child_keyrings=[_keyring(mpl, endpoint, k) for k in keys[1:]],
        )
    )


def _mrk_keyring(mpl: Any, endpoint: str, args: argparse.Namespace) -> Any:
    if args.discovery_account:
        return mpl.create_aws_kms_mrk_discovery_keyring(
            input=CreateAwsKmsMrkDiscoveryKeyringInput(
                kms_client=_kms(endpoint, args.region),
                region=args.region,
                discovery_filter=DiscoveryFilter(
                    account_ids=[args.discovery_account], partition="aws"
                ),
            )
        )
    (arn,) = args.key
    return mpl.create_aws_kms_mrk_keyring(
        input=CreateAwsKmsMrkKeyringInput(kms_key_id=arn, kms_client=_kms(endpoint, _region(arn)))
    )


def _decrypt_keyring(mpl: Any, endpoint: str, args: argparse.Namespace) -> Any:
    if args.mrk_aware:
        return _mrk_keyring(mpl, endpoint, args)
    if args.discovery_account:
        return mpl.create_aws_kms_discovery_keyring(
            input=CreateAwsKmsDiscoveryKeyringInput(
                kms_client=_kms(endpoint, "us-east-1"),
                discovery_filter=DiscoveryFilter(
                    account_ids=[args.discovery_account], partition="aws"
                ),
            )
        )
    return _encrypt_keyring(mpl, endpoint, args.key)


def _context(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mpl_keyring")
    parser.add_argument("endpoint")
    parser.add_argument("command", choices=("encrypt", "decrypt"))
    parser.add_argument("--key", action="append", default=[])
    parser.add_argument("--discovery-account")
    parser.add_argument("--mrk-aware", action="store_true")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--context", action="append", default=[])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    if not args.key and not (args.command == "decrypt" and args.discovery_account):
        parser.error("give --key (or --discovery-account to decrypt)")

    # The SDK logs a traceback when a failed stream closes; the one line below
    # is the report, so its logger is silenced.
    logging.getLogger("aws_encryption_sdk").setLevel(logging.CRITICAL)
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    sdk = EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    source = args.input.read_bytes()
    try:
        if args.command == "encrypt":
            keyring = _encrypt_keyring(mpl, args.endpoint, args.key)
            out, _ = sdk.encrypt(
                source=source, keyring=keyring, encryption_context=_context(args.context)
            )
        else:
            keyring = _decrypt_keyring(mpl, args.endpoint, args)
            out, _ = sdk.decrypt(
                source=source, keyring=keyring, encryption_context=_context(args.context)
            )
    except Exception as error:  # every failure, reported by class for the caller to check
        why = " ".join(str(error).split())[:500]
        print(f"mpl_keyring: {type(error).__name__}: {why}", file=sys.stderr)
        return 1
    args.output.write_bytes(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
