"""``keycask operator renew-tls``: a new self-signed certificate (and key)
for a data dir whose ``tls/`` ``operator init --tls-self-signed`` made; that
certificate is valid for one year. The server reads it at start, so a
restart picks the new one up, and every client trusts the new ``cert.pem``
in place of the old (a self-signed certificate is its own CA)."""

from __future__ import annotations

import argparse
import json

from keycask import config, privatefile
from keycask.cli.client import data_dir
from keycask.cli.errors import UsageError
from keycask.crypto import self_signed_certificate


def cmd_renew_tls(args: argparse.Namespace) -> int:
    tls_dir = data_dir(args) / config.TLS_DIR
    cert_file, key_file = tls_dir / config.TLS_CERT_FILE, tls_dir / config.TLS_KEY_FILE
    if not cert_file.exists():
        raise UsageError(
            f"{cert_file} does not exist: this data dir has no self-signed certificate "
            "(a server given --tls-cert/--tls-key renews those files itself)"
        )
    try:
        cert, private = self_signed_certificate(
            args.tls_hostname or ["localhost"],
            args.tls_ip or ["127.0.0.1", "::1"],
            days=args.days,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    # Each file is replaced atomically; the key first, so a crash between the
    # two leaves a pair the server refuses at start (and running this again
    # mends it), never a new certificate over a key it does not match that a
    # client would be asked to trust.
    privatefile.replace(key_file, private)
    privatefile.replace(cert_file, cert)
    if args.json:
        print(json.dumps({"tls_cert": str(cert_file), "days": args.days}))
        return 0
    print(
        f"new self-signed certificate in {cert_file}, valid for {args.days} days.\n"
        "Restart the server to serve it, and give every client the new cert.pem "
        "(--ca-file, KEYCASK_CACERT, AWS_CA_BUNDLE or the profile's ca_bundle): "
        "the old one no longer vouches for the server."
    )
    return 0


def add_renew_tls(operator: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    renew = operator.add_parser(
        "renew-tls",
        help="replace the data dir's self-signed TLS certificate (init's lasts a year)",
        description="Make a new self-signed certificate and key in the data dir's tls/, "
        "replacing the ones `operator init --tls-self-signed` made. Give the same "
        "--tls-hostname and --tls-ip as at init. Then restart the server and hand "
        "clients the new tls/cert.pem.",
        epilog="examples:\n  keycask operator renew-tls --data-dir /var/lib/keycask "
        "--tls-hostname kms.internal",
    )
    renew.add_argument(
        "--data-dir", help="the data directory (env KEYCASK_DATA_DIR, default ./.keycask)"
    )
    renew.add_argument(
        "--tls-hostname",
        action="append",
        help="DNS name for it (repeatable; default: localhost)",
    )
    renew.add_argument(
        "--tls-ip",
        action="append",
        help="IP address for it (repeatable; default: 127.0.0.1 and ::1)",
    )
    renew.add_argument("--days", type=int, default=365, help="how long it is valid")
    renew.add_argument("--json", action="store_true", help="print JSON")
    renew.set_defaults(func=cmd_renew_tls)
