"""Amazon Resource Names as a value: ``arn:<partition>:<service>:<region>:<account>:<resource>``.

One parser and one formatter for every ARN keycask reads or renders (key
and alias ARNs, principal and account-root ARNs), instead of ``split(":")``
at each use. Parsing is structural only: six colon-separated fields, the
first ``arn``; the resource keeps its own colons and slashes. Whether an
ARN names something keycask serves (its partition, service, region) is the
caller's question.
"""

from __future__ import annotations

from dataclasses import dataclass

from keycask.config import partition


@dataclass(frozen=True, slots=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Arn:
        """The ARN ``text`` spells; ValueError if it is not one."""
        found = cls.parse_or_none(text)
        if found is None:
            raise ValueError(f"{text!r} is not an ARN (arn:partition:service:region:account:...)")
        return found

    @classmethod
    def parse_or_none(cls, text: str) -> Arn | None:
        parts = text.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn":
            return None
        return cls(parts[1], parts[2], parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"

    @property
    def resource_type(self) -> str:
        """The resource up to its first slash: key, alias, user, role or root."""
        return self.resource.partition("/")[0]

    @property
    def resource_name(self) -> str:
        """The resource after its type: a key id, an alias's name, a principal's path and name."""
        return self.resource.partition("/")[2]

    # -- the ARNs keycask renders, in the partition it serves --

    @classmethod
    def key(cls, region: str, account: str, key_id: str) -> Arn:
        return cls(partition(), "kms", region, account, f"key/{key_id}")

    @classmethod
    def alias(cls, region: str, account: str, alias_name: str) -> Arn:
        """``alias_name`` includes its ``alias/`` prefix."""
        return cls(partition(), "kms", region, account, alias_name)

    @classmethod
    def principal(cls, account: str, kind: str, name: str) -> Arn:
        """A user (``kind`` "user") or role ("role")."""
        return cls(partition(), "iam", "", account, f"{kind}/{name}")

    @classmethod
    def root(cls, account: str) -> Arn:
        """The account's root principal, as key policies name the account."""
        return cls(partition(), "iam", "", account, "root")
