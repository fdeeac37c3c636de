"""Seal types are plug-ins: the registry holds every seal type, each answers
the ``SealType`` protocol, and nothing outside ``keycask/seal/`` compares a
seal's name (adding a seal type touches ``seal/`` only)."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import keycask
import keycask.seal
from keycask.seal import SEAL_TYPES, Secret, registry
from keycask.seal.dev import DevSeal
from keycask.seal.types import SealParams

SRC = Path(keycask.__file__).resolve().parent


def _seal_modules() -> set[str]:
    return {info.name for info in pkgutil.iter_modules(keycask.seal.__path__)}


def test_the_registry_holds_every_seal_type() -> None:
    # Every module of seal/ that makes an operator seal file registers its type.
    made_here = {
        name
        for name in _seal_modules()
        if "SEAL_TYPE = " in (SRC / "seal" / f"{name}.py").read_text()
    }
    assert made_here == {"shamir", "passphrase", "pkcs11"}
    assert set(registry.SEAL_TYPES) == made_here == set(SEAL_TYPES)
    assert registry.DEFAULT.name == "shamir"
    for name, kind in registry.SEAL_TYPES.items():
        assert kind.name == name and registry.get(name) is kind
        assert isinstance(kind.secret, Secret) and kind.title and kind.proof
        # Each declares where a command takes its secrets: never argv.
        for source in (kind.unseal_secret, kind.current_secret, kind.new_secret):
            assert source is None or source.flag is None or source.flag.endswith("-file")
    assert registry.find("nope") is None and registry.find(DevSeal.name) is None


def test_an_unknown_seal_type_is_refused_by_name() -> None:
    try:
        registry.get("rot13")
    except keycask.errors.SealError as error:
        assert "rot13" in str(error) and "shamir" in str(error)
    else:
        raise AssertionError("an unknown seal type was accepted")


def test_each_type_validates_its_own_parameters() -> None:
    shamir, passphrase, pkcs11 = (registry.get(n) for n in ("shamir", "passphrase", "pkcs11"))
    shamir.validate(SealParams(shares=5, threshold=3), modules=None)
    for bad in (SealParams(shares=3, threshold=5), SealParams(shares=5, threshold=1)):
        _refused(lambda p=bad: shamir.validate(p, modules=None))
    _refused(lambda: passphrase.validate(SealParams(), modules=None))
    complete = SealParams(module="/lib/x.so", token_label="t", key_label="k", pin="1234")
    pkcs11.validate(complete, modules=None)
    pkcs11.validate(complete, modules=["/lib/x.so"])
    _refused(lambda: pkcs11.validate(complete, modules=["/lib/other.so"]))
    _refused(lambda: pkcs11.validate(SealParams(module="/lib/x.so"), modules=None))


def _refused(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except keycask.errors.SealError:
        return
    raise AssertionError("bad parameters were accepted")


def _seal_names() -> set[str]:
    return set(registry.SEAL_TYPES) | {DevSeal.name}


def _comparisons(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines comparing a value with a seal name: ``== "shamir"``,
    ``in ("shamir", ...)``, a dict or ``choices=`` keyed by seal names."""

    def named(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(named(item) for item in node.elts)
        return False

    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and any(named(side) for side in (node.left, *node.comparators))
        ) or (
            isinstance(node, ast.Dict) and any(key is not None and named(key) for key in node.keys)
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg == "choices" and named(node.value):
            lines.append(node.value.lineno)
        elif isinstance(node, ast.match_case) and any(
            named(sub) for sub in ast.walk(node.pattern) if isinstance(sub, ast.Constant)
        ):
            lines.append(node.pattern.lineno)
    return lines


def test_no_seal_name_is_compared_outside_seal() -> None:
    names = _seal_names()
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if (SRC / "seal") in path.parents:
            continue
        text = path.read_text()
        found += [
            f"{path.relative_to(SRC)}:{line}" for line in _comparisons(ast.parse(text), names)
        ]
        # The check of the issue: no seal type's name as a string literal at all.
        for name in registry.SEAL_TYPES:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path, name)
    assert found == []


def test_the_scan_finds_the_comparisons_it_forbids() -> None:
    names = _seal_names()
    for source in (
        'if kind == "shamir": pass',
        'ok = kind in ("passphrase", "pkcs11")',
        'proof = {"shamir": 1}[kind]',
        'parser.add_argument("--seal", choices=["shamir", "passphrase"])',
        'if self.kind != "dev": pass',
    ):
        assert _comparisons(ast.parse(source), names) == [1], source
    assert _comparisons(ast.parse("if kind.secret is Secret.SHARES: pass"), names) == []
