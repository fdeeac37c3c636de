"""Properties of the secrets file format (cli/secretfile.py): both layouts
round-trip exactly, written files are canonical (sorted, one line per
secret), and no bytes whatever make the parser fail with anything but its
own format error, whose text never quotes a value."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keycask.cli.errors import UsageError
from keycask.cli.secretfile import (
    NAME_CONTEXT_KEY,
    Layout,
    SecretFile,
    SecretFileError,
    layout_for,
    parse,
    serialize,
    valid_name,
)

ARN = "arn:aws:kms:us-east-1:000000000000:key/6f1c2a84-7a4e-4b5e-9d0e-2f8e1c9b0a11"
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,127}", fullmatch=True)
blobs = st.binary(min_size=1, max_size=300)
context_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
contexts = st.dictionaries(
    context_text.filter(lambda k: bool(k) and not k.startswith("keycask:")),
    context_text,
    max_size=5,
)
key_ids = st.one_of(
    st.just(ARN),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80),
)
files = st.builds(
    SecretFile, key_id=key_ids, context=contexts, secrets=st.dictionaries(names, blobs, max_size=8)
)
layouts = st.sampled_from(Layout)


def _parses_or_refuses(data: bytes, layout: Layout) -> None:
    """Either the format error, one line, or a file that writes back to
    itself: nothing else."""
    try:
        parsed = parse(data, layout)
    except SecretFileError as error:
        assert "\n" not in str(error)
        return
    assert parse(serialize(parsed, layout), layout) == parsed


@given(files, layouts)
@settings(max_examples=300)
def test_round_trip_both_layouts(secret_file: SecretFile, layout: Layout) -> None:
    data = serialize(secret_file, layout)
    assert parse(data, layout) == secret_file
    # Canonical: writing what was read gives the same bytes.
    assert serialize(parse(data, layout), layout) == data


@given(files)
def test_dotenv_is_sorted_one_line_per_secret(secret_file: SecretFile) -> None:
    lines = serialize(secret_file, Layout.DOTENV).decode().splitlines()
    assert lines[0] == "# keycask-secrets: 1"
    assert lines[1] == f"# key-id: {secret_file.key_id}"
    assert json.loads(lines[2].removeprefix("# context: ")) == secret_file.context
    body = lines[3:]
    assert len(body) == len(secret_file.secrets)
    assert [line.split("=", 1)[0] for line in body] == sorted(secret_file.secrets)
    assert all(line.split("=", 1)[1].startswith("kc1:") for line in body)


@given(files)
def test_json_is_sorted_one_line_per_secret(secret_file: SecretFile) -> None:
    text = serialize(secret_file, Layout.JSON).decode("ascii")
    assert text.endswith("}\n")
    document = json.loads(text)
    assert list(document) == ["keycask_secrets", "key_id", "context", "secrets"]
    assert list(document["secrets"]) == sorted(secret_file.secrets)
    lines = text.splitlines()
    if not secret_file.secrets:
        assert lines[-2:] == ['  "secrets": {}', "}"]
        return
    body = lines[lines.index('  "secrets": {') + 1 :]
    assert len(body) == len(secret_file.secrets) + 2  # the closing braces
    for name in secret_file.secrets:
        # The secret's own line holds its name and its whole value.
        [line] = [line for line in body if line.strip().startswith(f'"{name}":')]
        assert line.strip().rstrip(",") == f'"{name}": "{document["secrets"][name]}"'


@given(st.binary(max_size=2000), layouts)
@settings(max_examples=500)
@example(b"[" * 100_000, Layout.JSON)
@example(b'{"keycask_secrets": true, "key_id": "k", "context": {}, "secrets": {}}', Layout.JSON)
@example(
    b'{"keycask_secrets": 1, "key_id": "k", "context": {}, "secrets": {"A": NaN}}', Layout.JSON
)
@example(b'{"keycask_secrets": 1' + b"0" * 5000 + b"}", Layout.JSON)
@example(b"# keycask-secrets: 1\n# key-id: k\n# context: " + b"[" * 100_000, Layout.DOTENV)
@example(b"\xff\xfe", Layout.DOTENV)
def test_arbitrary_bytes_never_crash_the_parser(data: bytes, layout: Layout) -> None:
    _parses_or_refuses(data, layout)


@given(st.text(max_size=400), layouts)
@settings(max_examples=300)
def test_arbitrary_text_never_crashes_the_parser(text: str, layout: Layout) -> None:
    _parses_or_refuses(text.encode("utf-8", "surrogatepass"), layout)


@given(files, layouts, st.data())
@settings(max_examples=300)
def test_mutated_files_parse_or_fail_cleanly(
    secret_file: SecretFile, layout: Layout, data: st.DataObject
) -> None:
    """Hand edits: a byte changed, dropped or inserted anywhere."""
    raw = bytearray(serialize(secret_file, layout))
    at = data.draw(st.integers(0, len(raw) - 1))
    edit = data.draw(st.sampled_from(["flip", "drop", "insert"]))
    byte = data.draw(st.integers(0, 255))
    if edit == "flip":
        raw[at] ^= byte or 1
    elif edit == "drop":
        del raw[at]
    else:
        raw.insert(at, byte)
    _parses_or_refuses(bytes(raw), layout)


@given(st.text(max_size=140))
def test_names_are_environment_variable_names(name: str) -> None:
    ok = valid_name(name)
    assert ok == (
        0 < len(name) <= 128
        and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
        and not name[0].isdigit()
    )
    line = f"# keycask-secrets: 1\n# key-id: {ARN}\n# context: {{}}\n{name}=kc1:AAAA\n"
    if ok:
        assert list(parse(line.encode(), Layout.DOTENV).secrets) == [name]
    else:
        with pytest.raises(SecretFileError):
            parse(line.encode("utf-8", "surrogatepass"), Layout.DOTENV)


def _dotenv(*body: str, context: str = "{}") -> bytes:
    return (
        "\n".join([f"# keycask-secrets: 1\n# key-id: {ARN}\n# context: {context}", *body]) + "\n"
    ).encode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_dotenv("PASSWORD=hunter2-plaintext"), "not a keycask ciphertext"),
        (_dotenv("# a comment"), "comments and blank lines"),
        (_dotenv(""), "comments and blank lines"),
        (_dotenv("A=kc1:AAAA", "A=kc1:AAAB"), "A appears twice"),
        (_dotenv("1A=kc1:AAAA"), "the name does not match"),
        (_dotenv("A-B=kc1:AAAA"), "the name does not match"),
        (_dotenv("A=kc1:AAAA "), "not a keycask ciphertext"),
        (_dotenv("A=kc1:AAB="), "not a keycask ciphertext"),  # non-canonical base64
        (_dotenv("A=kc1:"), "not a keycask ciphertext"),
        (_dotenv(context='{"keycask:secret":"B"}'), "keycask's own"),
        (_dotenv(context='{"a":1}'), "text to text"),
        (_dotenv(context='{"a":"1","a":"2"}'), "twice"),
        (b"# keycask-secrets: 2\n# key-id: k\n# context: {}\n", "format version"),
        (b"A=kc1:AAAA\n", "the header is missing"),
        (b"A=kc1:AAAA\n# key-id: k\n# context: {}\n", "line 1"),
        (b"# keycask-secrets: 1\n# key-id:  k\n# context: {}\n", "not a key ARN"),
    ],
)
def test_dotenv_refusals(data: bytes, why: str) -> None:
    with pytest.raises(SecretFileError, match=why) as caught:
        parse(data, Layout.DOTENV)
    assert "hunter2" not in str(caught.value)


def _json(**fields: object) -> bytes:
    document: dict[str, object] = {
        "keycask_secrets": 1,
        "key_id": ARN,
        "context": {},
        "secrets": {},
    }
    document.update(fields)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_json(secrets={"PASSWORD": "hunter2-plaintext"}), "not a keycask ciphertext"),
        (_json(secrets={"PASS WORD": "kc1:AAAA"}), "does not match"),
        (_json(secrets=["kc1:AAAA"]), '"secrets" is not a JSON object'),
        (_json(keycask_secrets=True), "format version"),
        (_json(keycask_secrets="1"), "format version"),
        (_json(key_id=""), "key id is missing"),
        (_json(key_id=5), "key id is missing or not text"),
        (_json(key_id="a\nb"), "not a key ARN"),
        (_json(extra=1), "unknown field"),
        (_json(context={"keycask:secret": "X"}), "keycask's own"),
        (b'{"keycask_secrets": 1, "key_id": "k", "context": {}, "secrets": {"A": "kc1:AAAA", '
         b'"A": "kc1:AAAB"}}', "A appears twice"),
        (b"[]", "not a JSON object"),
        (b"{", "not valid JSON"),
    ],
)  # fmt: skip
def test_json_refusals(data: bytes, why: str) -> None:
    with pytest.raises(SecretFileError, match=why) as caught:
        parse(data, Layout.JSON)
    assert "hunter2" not in str(caught.value)


def test_crlf_and_a_missing_final_newline_are_the_same_file() -> None:
    canonical = _dotenv("A=kc1:AAAA")
    expected = parse(canonical, Layout.DOTENV)
    assert parse(canonical.replace(b"\n", b"\r\n"), Layout.DOTENV) == expected
    assert parse(canonical.rstrip(b"\n"), Layout.DOTENV) == expected


def test_the_context_of_a_value_binds_its_name() -> None:
    secret_file = SecretFile(ARN, {"app": "billing"}, {"A": b"x"})
    assert secret_file.context_for("A") == {"app": "billing", NAME_CONTEXT_KEY: "A"}


@pytest.mark.parametrize(
    ("path", "layout"),
    [
        ("secrets.json", Layout.JSON),
        ("dir.env/x.JSON", Layout.JSON),
        (".env", Layout.DOTENV),
        ("prod.env", Layout.DOTENV),
        (".env.production", Layout.DOTENV),
        ("config/.env.local", Layout.DOTENV),
    ],
)
def test_layout_by_extension(path: str, layout: Layout) -> None:
    assert layout_for(path) is layout


@pytest.mark.parametrize("path", ["secrets.yaml", "secrets", "env", "secrets.env.bak", "x.jsonl"])
def test_other_extensions_are_refused(path: str) -> None:
    with pytest.raises(UsageError, match=r"\.json for JSON"):
        layout_for(path)
