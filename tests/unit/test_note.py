"""C2SP signed notes and tlog checkpoints, against the test vectors of Go's golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.note import (
    Checkpoint,
    NoteError,
    Signature,
    Verifier,
    format_skey,
    format_vkey,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_skey,
    parse_vkey,
    sign_note,
)

# From golang.org/x/mod/sumdb/note/note_test.go.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = ("If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
             "RZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
             "3WWd1RvMc+QQ=\n")
SIGNED = TEXT + "\n" + PETER_SIG


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture
def peter() -> Verifier:
    return parse_vkey(PETER_VKEY)


def _resign_line(line: str, mutate) -> str:
    prefix, _, b64 = line.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(b64))
    mutate(raw)
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


# -- the Go vectors -------------------------------------------------------------------------------


def test_parse_vkey_of_the_go_vector(peter: Verifier) -> None:
    assert peter.name == "PeterNeumann"
    assert peter.key_id == bytes.fromhex("c74f20a3")
    assert len(peter.public_key) == 32
    assert peter.vkey == PETER_VKEY


def test_key_id_and_vkey_from_the_skey_seed_reproduce_the_go_vector() -> None:
    name, key = parse_skey(PETER_SKEY)
    assert name == "PeterNeumann"
    assert key_id(name, _raw_public(key)) == bytes.fromhex("c74f20a3")
    assert format_vkey(name, _raw_public(key)) == PETER_VKEY
    assert format_skey(name, key) == PETER_SKEY
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    assert format_vkey(name, _raw_public(Ed25519PrivateKey.from_private_bytes(seed))) == PETER_VKEY


def test_signing_the_go_vector_reproduces_its_signature() -> None:
    assert sign_note(TEXT, [parse_skey(PETER_SKEY)]) == SIGNED


def test_open_the_go_vector(peter: Verifier) -> None:
    note = open_note(SIGNED, [peter])
    assert note.body == TEXT
    assert [(s.name, s.key_id) for s in note.signatures] == [("PeterNeumann", bytes.fromhex("c74f20a3"))]
    assert note.unverified == []
    assert open_note(SIGNED.encode(), [peter]).body == TEXT


def test_unknown_signatures_are_ignored_when_a_known_one_verifies(peter: Verifier) -> None:
    note = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert [s.name for s in note.signatures] == ["PeterNeumann"]
    assert [(s.name, s.key_id.hex()) for s in note.unverified] == [("EnochRoot", "af0cfe78")]
    both = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter, parse_vkey(ENOCH_VKEY)])
    assert [s.name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == []


def test_a_key_sharing_only_the_name_or_only_the_id_is_unknown(peter: Verifier) -> None:
    other = Ed25519PrivateKey.generate()
    same_name = Verifier.from_public_key("PeterNeumann", _raw_public(other))
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(SIGNED, [same_name])
    same_id = Verifier("CarmenSandiego", peter.key_id, peter.public_key)
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(SIGNED, [same_id])


def test_mangled_vkeys_are_refused() -> None:
    """Go's TestNewVerifier: every proper substring and every single-byte increment must fail."""
    accepted = []
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                try:
                    parse_vkey(PETER_VKEY[i:j])
                    accepted.append(PETER_VKEY[i:j])
                except ValueError:
                    pass
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1:]
        try:
            parse_vkey(mangled)
            accepted.append(mangled)
        except ValueError:
            pass
    assert accepted == []


@pytest.mark.parametrize("vkey", [
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong length, id adjusted
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm, id adjusted
    "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case id
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # id of another key
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",  # bad padding
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # URL alphabet
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3",
    "",
])
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(ValueError):
        parse_vkey(vkey)


def test_mangled_skeys_are_refused() -> None:
    """Go's TestNewSigner: every proper substring and every single-byte increment must fail."""
    accepted = []
    candidates = [PETER_SKEY[i:j] for i in range(len(PETER_SKEY) + 1) for j in range(i + 1, len(PETER_SKEY) + 1)
                  if (i, j) != (0, len(PETER_SKEY))]
    candidates += [PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1:] for i in range(len(PETER_SKEY))]
    for skey in candidates:
        try:
            parse_skey(skey)
            accepted.append(skey)
        except ValueError:
            pass
    assert accepted == []


# -- round trips ----------------------------------------------------------------------------------


def test_round_trip_with_two_signers() -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = "qgate.local/audit\n42\n" + base64.b64encode(bytes(range(32))).decode() + "\n"
    note = sign_note(body, [("qgate.local/audit", a), ("witness.example/w1", b)])
    lines = note.split("\n")
    assert lines[3] == "" and lines[4].startswith("\u2014 qgate.local/audit ")
    va = parse_vkey(format_vkey("qgate.local/audit", _raw_public(a)))
    vb = Verifier.from_public_key("witness.example/w1", _raw_public(b))
    opened = open_note(note, [va, vb])
    assert opened.body == body
    assert [(s.name, s.key_id) for s in opened.signatures] == [(va.name, va.key_id), (vb.name, vb.key_id)]
    assert [s.name for s in open_note(note, [vb]).signatures] == ["witness.example/w1"]


def test_skey_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    name, parsed = parse_skey(format_skey("example.com/log", key))
    assert name == "example.com/log" and _raw_public(parsed) == _raw_public(key)


def test_duplicate_identical_signature_lines_are_recorded_once(peter: Verifier) -> None:
    note = open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG, [peter])
    assert len(note.signatures) == 1 and len(note.unverified) == 1


# -- refusals -------------------------------------------------------------------------------------


def test_only_unknown_keys_is_refused() -> None:
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    stranger = Verifier.from_public_key("stranger", _raw_public(Ed25519PrivateKey.generate()))
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(SIGNED, [stranger])


@pytest.mark.parametrize("changed", [
    TEXT.replace("problem,", "problem;"),
    TEXT.replace("If", "if"),
    TEXT + "extra line\n",
    TEXT[:-1] + " \n",
    "x\n" + TEXT,
])
def test_signature_over_a_changed_body_is_refused(peter: Verifier, changed: str) -> None:
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(changed + "\n" + PETER_SIG, [peter])


@pytest.mark.parametrize("position", [4, 5, 20, 40, 67])
def test_flipped_signature_byte_is_refused(peter: Verifier, position: int) -> None:
    def flip(raw: bytearray) -> None:
        raw[position] ^= 0x01
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + _resign_line(PETER_SIG, flip), [peter])


def test_a_bad_known_signature_is_refused_even_beside_a_good_one(peter: Verifier) -> None:
    def flip(raw: bytearray) -> None:
        raw[10] ^= 0x80
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + PETER_SIG + _resign_line(PETER_SIG, flip), [peter])


def test_signature_of_the_wrong_length_for_a_known_key_is_refused(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + _resign_line(PETER_SIG, lambda raw: raw.extend(b"\x00")), [peter])
    go_abcd = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(go_abcd, [peter])


@pytest.mark.parametrize("text", [
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    TEXT + "\n" + PETER_SIG.replace("\u2014 ", "- "),
    TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2013 "),
    TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"),
    TEXT + "\n" + PETER_SIG.replace("\u2014 ", " \u2014 "),
    TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!"),
    TEXT + "\n" + PETER_SIG.replace("AM=\n", "AM\n"),
    TEXT + "\n" + PETER_SIG.replace(" x08go", "  x08go"),
    TEXT + "\n" + PETER_SIG.replace("PeterNeumann ", "Peter+Neumann "),
    TEXT + "\n" + "\u2014 PeterNeumann \n",
    TEXT + "\n" + "\u2014 PeterNeumann " + base64.b64encode(bytes.fromhex("c74f20a3") + bytes(63)).decode() + "\n",
    TEXT + "\n" + PETER_SIG + "\n",
    TEXT + "\n" + PETER_SIG + "\n" + PETER_SIG,
    "\n" + PETER_SIG,
    TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG,
    TEXT + "\n" + PETER_SIG * 101,
    "\ud800" + TEXT + "\n" + PETER_SIG,
])
def test_malformed_notes_are_refused(peter: Verifier, text: str) -> None:
    with pytest.raises(NoteError):
        open_note(text, [peter])


def test_invalid_utf8_bytes_are_refused(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff" + SIGNED.encode(), [peter])


def test_up_to_100_signature_lines_are_accepted(peter: Verifier) -> None:
    assert len(open_note(TEXT + "\n" + PETER_SIG * 100, [peter]).signatures) == 1


def test_empty_lines_in_the_body_are_refused(peter: Verifier) -> None:
    key = parse_skey(PETER_SKEY)
    for body in ["a\n\nb\n", "\na\n", "a\n\n", "\n"]:
        with pytest.raises(NoteError, match="empty lines"):
            sign_note(body, [key])
    signature = _resign_line(PETER_SIG, lambda raw: None)
    with pytest.raises(NoteError, match="empty lines"):
        open_note("line one\n\n" + TEXT + "\n" + signature, [peter])


@pytest.mark.parametrize("body", ["", "no final newline", "tab\there\n", "nul\x00\n", "cr\r\n", "\ud800\n"])
def test_sign_note_refuses_bad_bodies(body: str) -> None:
    with pytest.raises(NoteError):
        sign_note(body, [parse_skey(PETER_SKEY)])


def test_sign_note_refuses_bad_signers() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError):
        sign_note(TEXT, [])
    with pytest.raises(NoteError):
        sign_note(TEXT, [("a", key), ("a", key)])
    for name in ["", "a b", "a+b", "a\tb", "a\u00a0b"]:
        with pytest.raises(ValueError):
            sign_note(TEXT, [(name, key)])


def test_ambiguous_known_keys_are_refused(peter: Verifier) -> None:
    impostor = Verifier(peter.name, peter.key_id, _raw_public(Ed25519PrivateKey.generate()))
    with pytest.raises(NoteError, match="ambiguous"):
        open_note(SIGNED, [peter, impostor])
    assert open_note(SIGNED, [peter, peter]).signatures == [
        Signature("PeterNeumann", peter.key_id, base64.b64decode(PETER_SIG.split()[-1])[4:])]


def test_key_id_refuses_bad_names_and_keys() -> None:
    with pytest.raises(ValueError):
        key_id("a+b", bytes(32))
    with pytest.raises(ValueError):
        key_id("ok", bytes(31))


# -- checkpoints ----------------------------------------------------------------------------------


ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def test_checkpoint_body_format_and_round_trip() -> None:
    cp = Checkpoint("qgate.local/audit", 8, ROOT)
    body = cp.to_body()
    assert body == "qgate.local/audit\n8\nXcnaeacGWamtVZy3Ad7Zoqudgjqt L0lgz+Nw7/RgQyg=\n".replace(" ", "")
    assert parse_checkpoint(body) == cp
    with_ext = Checkpoint("qgate.local/audit", 0, bytes(32), ["ext one", "— ext two"])
    assert parse_checkpoint(with_ext.to_body()) == with_ext


def test_c2sp_example_checkpoint_parses() -> None:
    cp = parse_checkpoint("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    assert (cp.origin, cp.size, len(cp.root_hash), cp.extensions) == ("example.com/behind-the-sofa", 20852163, 32, [])


@pytest.mark.parametrize("size_line", ["01", "00", "-1", "+1", " 1", "1 ", "1_000", "0x10", "1e3", "",
                                       "\u0661", "\uff11", "18446744073709551616"])
def test_checkpoint_size_must_be_plain_decimal(size_line: str) -> None:
    root = base64.b64encode(ROOT).decode()
    with pytest.raises(NoteError):
        parse_checkpoint(f"origin\n{size_line}\n{root}\n")


@pytest.mark.parametrize("root_line", [
    base64.b64encode(ROOT[:31]).decode(),
    base64.b64encode(ROOT + b"\x00").decode(),
    base64.b64encode(ROOT).decode().rstrip("="),
    base64.urlsafe_b64encode(bytes([0xfb]) * 32).decode(),
    ROOT.hex(),
    base64.b64encode(ROOT).decode()[:-2] + "h=",
    "",
])
def test_checkpoint_root_must_be_32_bytes_of_strict_base64(root_line: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(f"origin\n8\n{root_line}\n")


@pytest.mark.parametrize("body", [
    "origin\n8\n",
    "origin\n8\n" + base64.b64encode(ROOT).decode(),
    "origin\n8\n" + base64.b64encode(ROOT).decode() + "\n\next\n",
    "\n8\n" + base64.b64encode(ROOT).decode() + "\n",
])
def test_checkpoint_structure_is_strict(body: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(body)


@pytest.mark.parametrize("cp", [
    Checkpoint("", 1, ROOT),
    Checkpoint("two\nlines", 1, ROOT),
    Checkpoint("o", -1, ROOT),
    Checkpoint("o", 1 << 64, ROOT),
    Checkpoint("o", True, ROOT),
    Checkpoint("o", 1, ROOT[:16]),
    Checkpoint("o", 1, ROOT, [""]),
])
def test_checkpoint_to_body_refuses_invalid_fields(cp: Checkpoint) -> None:
    with pytest.raises(NoteError):
        cp.to_body()


def test_signed_checkpoint_opens() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = Verifier.from_public_key("qgate.local/audit", _raw_public(key))
    text = sign_note(Checkpoint("qgate.local/audit", 8, ROOT).to_body(), [("qgate.local/audit", key)])
    cp, note = open_checkpoint(text, [verifier], origin="qgate.local/audit")
    assert (cp.size, cp.root_hash) == (8, ROOT) and note.signatures[0].name == "qgate.local/audit"
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(text, [verifier], origin="other.example/log")
    forged = text.replace("\n8\n", "\n9\n")
    with pytest.raises(NoteError, match="invalid signature"):
        open_checkpoint(forged, [verifier])


@pytest.mark.parametrize("text,reason", [
    (TEXT, "no blank line"),
    (TEXT + "\n" + PETER_SIG[:-1], "does not end with a newline"),
    (TEXT + "\n" + PETER_SIG * 101, "more than 100"),
    (TEXT + "\n" + PETER_SIG.replace("\u2014 ", "- "), "em dash"),
    (TEXT + "\n" + PETER_SIG + "\u2014 Stranger " + base64.b64encode(bytes(4 + 63)).decode() + "\n", "shorter"),
    (TEXT + "\n" + PETER_SIG + "\u2014 Stranger " + base64.b64encode(bytes(70)).decode().rstrip("=") + "\n",
     "base64"),
])
def test_malformed_notes_say_why(peter: Verifier, text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        open_note(text, [peter])
