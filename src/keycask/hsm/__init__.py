"""PKCS#11 tokens that hold HSM-backed keys (custom key stores of type
AWS_CLOUDHSM): the registry of configured tokens (``registry``) and what
keycask asks of each (``token``, with ``pairs`` for RSA and EC key
pairs). With ``keycask.seal.pkcs11``, the only importer of ``pkcs11``,
which only ``token`` (and ``pairs``, through it) loads: reading the flags does
not load the library."""
