"""Docstrings and comments in src/keycask name only code that exists.

A name quoted as code (````name````, ````Class.member````, ````name()````) in a
docstring or a comment must be defined somewhere under src/keycask (a module,
class, function, method, attribute, parameter or import) or be a builtin; for
````Class.member```` with ``Class`` one of keycask's classes, ``member`` must be
on that class or a base. Names with capitals that are not keycask classes are
wire names (``CreateKey``, ``KEYCASK_ADDR``) and file names are paths; both are
left alone. What remains unresolved must be in ``_NOT_PYTHON``: names from
outside Python that keycask's notes quote on purpose.

A method renamed or removed leaves its old name in the notes that described
it; this catches that at the next test run.
"""

from __future__ import annotations

import ast
import builtins
import io
import itertools
import re
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "keycask"

# Quoted on purpose and not Python: SQL and PostgreSQL/SQLite names, a libc
# call, X.509 fields, the AWS JSON error member, an argparse attribute, and
# the members of JWTs and JWKs (RFC 7515/7517/7519) and of OpenID discovery.
_NOT_PYTHON = frozenset(
    {
        "alg",
        "aud",
        "crit",
        "exp",
        "iat",
        "iss",
        "jku",
        "jwks_uri",
        "kid",
        "nbf",
        "none",
        "sub",
        "x5c",
        "x5u",
        "flock",
        "integrity_check",
        "keycask_epoch",
        "keycask_schema",
        "kv",
        "not_valid_before",
        "search_path",
        "secure_delete",
        "synchronous_commit",
        "__type",
        "args.profile",
    }
)
_FILE_SUFFIXES = (".py", ".json", ".jsonl", ".md", ".db", ".key")
_QUOTED = re.compile(r"``([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\(\))?``")


class _Index:
    """Every name src/keycask defines, and the members of each of its classes."""

    def __init__(self, trees: dict[Path, ast.Module]) -> None:
        self.names: set[str] = set(dir(builtins))
        self.classes: dict[str, tuple[set[str], list[str]]] = {}
        for path, tree in trees.items():
            self.names.update(path.relative_to(SRC.parent).with_suffix("").parts)
            for node in ast.walk(tree):
                self._add(node)

    def _add(self, node: ast.AST) -> None:
        if isinstance(node, ast.ClassDef):
            members, bases = self.classes.setdefault(node.name, (set(), []))
            members.update(_defined_in(node))
            bases.extend(ast.unparse(b).rpartition(".")[2] for b in node.bases)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            self.names.update(
                arg.arg
                for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
                if arg
            )
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                self.names.update(alias.name.split("."))
                if alias.asname:
                    self.names.add(alias.asname)
            if isinstance(node, ast.ImportFrom) and node.module:
                self.names.update(node.module.split("."))
        self.names.update(_defined_in(node, shallow=True))

    def has_member(self, cls: str, member: str, seen: frozenset[str] = frozenset()) -> bool | None:
        """Whether ``cls`` (or a base) has ``member``; None: not ours to tell."""
        if cls not in self.classes or cls in seen:
            return None
        members, bases = self.classes[cls]
        if member in members:
            return True
        for base in bases:
            found = self.has_member(base, member, seen | {cls})
            if found or (found is None and base not in ("object", "Generic", "Exception")):
                return found
        return False


def _defined_in(node: ast.AST, *, shallow: bool = False) -> set[str]:
    found: set[str] = set()
    for sub in [node] if shallow else ast.walk(node):
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(sub.name)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
            found.add(sub.attr)
    return found


def _notes(tree: ast.Module, text: str) -> list[tuple[int, str]]:
    """(first line, text) of every docstring and comment."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.append((first.lineno, first.value.value))
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
    return found


def _unresolved(index: _Index, name: str) -> str | None:
    if name in _NOT_PYTHON or name.endswith(_FILE_SUFFIXES):
        return None
    parts = name.split(".")
    if parts[0] not in index.classes and any(c.isupper() for c in parts[0]):
        return None  # a wire or environment name, not ours
    for part in parts:
        if part not in index.names:
            return part
    for cls, member in itertools.pairwise(parts):
        if index.has_member(cls, member) is False:
            return f"{cls}.{member}"
    return None


def test_quoted_names_in_notes_exist() -> None:
    sources = {path: path.read_text() for path in sorted(SRC.rglob("*.py"))}
    trees = {path: ast.parse(text) for path, text in sources.items()}
    index = _Index(trees)
    stale = []
    for path, tree in trees.items():
        for line, note in _notes(tree, sources[path]):
            for match in _QUOTED.finditer(note):
                missing = _unresolved(index, match[1])
                if missing is not None:
                    at = line + note[: match.start()].count("\n")
                    stale.append(f"{path.relative_to(SRC.parent)}:{at}: {match[0]} ({missing})")
    assert stale == [], "notes name code that does not exist:\n" + "\n".join(stale)


def test_a_stale_name_is_caught() -> None:
    tree = ast.parse(
        "class Store:\n"
        '    """Cached until ``applied``; see ``Store.commit`` and ``Store.gone()``."""\n'
        "    def commit(self) -> None: ...\n"
    )
    index = _Index({SRC / "example.py": tree})
    assert _unresolved(index, "applied") == "applied"
    assert _unresolved(index, "Store.commit") is None
    assert _unresolved(index, "Store.gone") == "gone"
    assert _unresolved(index, "CreateKey") is None
