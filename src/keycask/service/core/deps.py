"""What handlers may use: the key store, the lifecycle clock, usage tracking,
principals and session tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from keycask.auth.credentials import CredentialStore
from keycask.auth.sessions import SessionTokens
from keycask.auth.tokens import TokenStore
from keycask.hsm.registry import Tokens
from keycask.keys.keystore import KeyStore
from keycask.ports import Clock
from keycask.service.core.authz import Authorizer
from keycask.service.core.usage import UsageTracker
from keycask.xksclient import XksClient


@dataclass(frozen=True, slots=True)
class Deps:
    keys: KeyStore
    # Lifecycle time (key dates, rotation, deletion, expiry). In --dev it can
    # be moved forward; SigV4 and audit times use the wall clock instead.
    clock: Clock
    usage: UsageTracker
    authz: Authorizer
    # Principals, to record the unique ids a key policy or grant names.
    credentials: CredentialStore | None = None
    # Role sessions' tokens: issued by the STS handlers (AssumeRole, ...).
    sessions: SessionTokens | None = None
    # Principals' bearer tokens (auth/tokens.py): the Vault door's callers.
    tokens: TokenStore | None = None
    # PKCS#11 tokens of custom key stores (--hsm): HSM-backed keys.
    hsm: Tokens = field(default_factory=Tokens)
    # The XKS proxy client: keys of EXTERNAL_KEY_STORE stores.
    xks: XksClient = field(default_factory=XksClient)
