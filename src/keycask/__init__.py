"""keycask: a self-hosted Key Management Service that speaks the AWS KMS API."""

__version__ = "0.1.0"
