"""OpenQASM from a request can neither read server files nor make the parsers allocate without bound.

Most tests replace both parsers with a tripwire: a refusal must come from the screen in front of them,
because the OpenQASM 2 parser (Rust) resolves includes itself and no Python hook would see it open a file.
"""

from __future__ import annotations

import builtins
import io
import os
import pathlib
import time
import tracemalloc
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import ValidationError

import solvers.circuits as circuits
from solvers.circuits import BELL, GHZ3, INCLUDE_REFUSED, MAX_ERROR_CHARS, parse_qasm
from solvers.problems import parse_problem

REPO = Path(__file__).resolve().parents[2]
MARKER = "leakedmarker7f3a"  # lowercase, so the old OpenQASM 2 parser quoted it as an undefined name
Q2 = "OPENQASM 2.0;\n"
Q3 = "OPENQASM 3.0;\n"
TAIL2 = "\nqreg q[1]; creg c[1]; measure q -> c;"
TAIL3 = "\nqubit[1] q; bit[1] c; c = measure q;"


class ParserReached(BaseException):
    """Not an Exception, so that no ``except Exception`` around the parser call can swallow it."""


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    parse_qasm.cache_clear()
    yield
    parse_qasm.cache_clear()


@pytest.fixture
def no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    import qiskit.qasm2
    import qiskit.qasm3

    def tripwire(*args: Any, **kwargs: Any) -> None:
        raise ParserReached("the parser was reached")

    monkeypatch.setattr(qiskit.qasm2, "loads", tripwire)
    monkeypatch.setattr(qiskit.qasm3, "loads", tripwire)


def _refusal(qasm: str) -> str:
    with pytest.raises(ValueError) as caught:
        parse_qasm(qasm)
    return str(caught.value)


def _both(path: str) -> list[str]:
    """The include of ``path`` as OpenQASM 2 and as OpenQASM 3."""
    return [f'{Q2}include "{path}";{TAIL2}', f'{Q3}include "{path}";{TAIL3}']


ATTACKS = {
    # absolute paths
    "etc passwd": _both("/etc/passwd"),
    "proc environ": _both("/proc/self/environ"),
    "repo pyproject absolute": _both(str(REPO / "pyproject.toml")),
    "repo settings absolute": _both(str(REPO / "settings.py")),
    "signing key": _both("var/keys/jwt-es256.pem") + _both("/run/secrets/jwt-es256.pem"),
    # relative paths and the repository's own files
    "dotdot": _both("../pyproject.toml"),
    "dotdot deep": _both("../../../../../../etc/passwd"),
    "repo file relative": _both("pyproject.toml") + _both("solvers/problems.py"),
    "dot slash stdlib": _both("./qelib1.inc") + _both("./stdgates.inc"),
    "stdlib then dotdot": _both("qelib1.inc/../../etc/passwd"),
    "stdlib case": _both("QELIB1.INC") + _both("StdGates.inc"),
    "stdlib padded": _both("qelib1.inc ") + _both(" stdgates.inc"),
    "backslash": _both("qelib1.inc\\"),
    # the other version's library
    "wrong version library": [f'{Q2}include "stdgates.inc";{TAIL2}', f'{Q3}include "qelib1.inc";{TAIL3}'],
    # comments, whitespace and quotes between the keyword and the path
    "block comment": [f'{Q2}include/**/"/etc/passwd";{TAIL2}', f'{Q3}include/* x */"/etc/passwd";{TAIL3}'],
    "newline": [f'{Q2}include\n"/etc/passwd";{TAIL2}', f'{Q3}include\r\n\t"/etc/passwd"\n;{TAIL3}'],
    "single quotes": [f"{Q2}include '/etc/passwd';{TAIL2}", f"{Q3}include '/etc/passwd';{TAIL3}"],
    "no space": [f'{Q2}include"/etc/passwd";{TAIL2}'],
    "hidden after a CR in a comment": [f'{Q2}// note\rinclude "/etc/passwd";\n{TAIL2}'],
    "include in a line comment": [f'{Q2}include "qelib1.inc"; // include "/etc/passwd";{TAIL2}'],
    "include in a block comment": [f'{Q3}include "stdgates.inc"; /* include "/etc/passwd"; */{TAIL3}'],
    "include in a gate body": [f'{Q2}gate g a {{ include "/etc/passwd"; }}{TAIL2}'],
    "second string": [f'{Q2}include "qelib1.inc" "/etc/passwd";{TAIL2}'],
    "no semicolon": [f'{Q2}include "/etc/passwd"'],
    "identifier include": [f'{Q2}include "qelib1.inc"; gate included a {{ x a; }}{TAIL2}'],
    "upper case keyword": [f'{Q2}INCLUDE "/etc/passwd";{TAIL2}'],
    "number glued to keyword": [f'{Q3}1include "/etc/passwd";{TAIL3}'],
}


@pytest.mark.parametrize(
    "qasm", [pytest.param(q, id=f"{name}-{i}") for name, qs in ATTACKS.items() for i, q in enumerate(qs)]
)
def test_non_standard_includes_are_refused_before_any_parser(qasm: str, no_parser: None) -> None:
    message = _refusal(qasm)
    assert INCLUDE_REFUSED in message
    for leak in ("/etc", "passwd", "pyproject", "environ", "secrets", "keys", str(REPO)):
        assert leak not in message


UNICODE_TRICKS = {
    "fullwidth letters": f'{Q2}ｉｎｃｌｕｄｅ "/etc/passwd";{TAIL2}',
    "zero-width space": f'{Q2}inc\u200blude "/etc/passwd";{TAIL2}',
    "line separator ending a comment": f'{Q2}// note\u2028include "/etc/passwd";{TAIL2}',
    "vertical tab ending a comment": f'{Q2}// note\x0binclude "/etc/passwd";{TAIL2}',
    "cyrillic e": f'{Q2}include "q\u0435lib1.inc";{TAIL2}',
    "nul": f'{Q2}include "/etc/passwd\x00qelib1.inc";{TAIL2}',
    "qasm3 line separator": f'{Q3}include "stdgates.inc"; // θ\u2028include "/etc/passwd";{TAIL3}',
}


@pytest.mark.parametrize("qasm", list(UNICODE_TRICKS.values()), ids=list(UNICODE_TRICKS))
def test_unicode_and_control_tricks_are_refused_before_any_parser(qasm: str, no_parser: None) -> None:
    message = _refusal(qasm)
    assert "passwd" not in message and "/etc" not in message


def _missing(path: Path) -> str:
    return str(path.with_name(path.name + ".no-such-file"))


EXISTENCE_PAIRS = {
    "repo file": (str(REPO / "pyproject.toml"), _missing(REPO / "pyproject.toml")),
    "system file": ("/etc/passwd", "/etc/passwd.no-such-file"),
    "proc": ("/proc/self/environ", "/proc/self/environ.no-such-file"),
    "relative": (os.path.join("..", Path.cwd().name, os.path.relpath(REPO / "pyproject.toml")),
                 os.path.join("..", Path.cwd().name, "no-such-file.toml")),
}


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("pair", list(EXISTENCE_PAIRS.values()), ids=list(EXISTENCE_PAIRS))
def test_existing_and_missing_files_give_the_same_message(pair: tuple[str, str], version: int) -> None:
    existing, missing = (_both(path)[version - 2] for path in pair)
    assert _refusal(existing) == _refusal(missing)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "signing.inc"
    path.write_text(f"{MARKER}:x:0:0:root:/root:/bin/bash\nqreg {MARKER}[1];\n")
    return path


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch, secret: Path) -> list[str]:
    """Paths in the secret's folder that Python code opens once the secret is written.

    The OpenQASM 2 parser reads includes in Rust, out of these hooks' sight: the marker check and the
    parser tripwire of the other tests cover it.
    """
    seen: list[str] = []
    real_open, real_os_open, real_path_open = builtins.open, os.open, pathlib.Path.open

    def record(path: Any) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            name = os.path.abspath(os.fsdecode(path))
            if name.startswith(str(secret.parent)):
                seen.append(name)

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        record(file)
        return real_open(file, *args, **kwargs)

    def fake_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        record(path)
        return real_os_open(path, *args, **kwargs)

    def fake_path_open(self: pathlib.Path, *args: Any, **kwargs: Any) -> Any:
        record(self)
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(pathlib.Path, "open", fake_path_open)
    return seen


def test_a_secret_file_is_never_opened_nor_quoted(secret: Path, opened: list[str], tmp_path: Path) -> None:
    relative = os.path.relpath(secret, os.getcwd())
    programs = _both(str(secret)) + _both(relative) + [f"{Q2}include '{secret}';{TAIL2}",
                                                       f'{Q2}include /* */ "{secret}";{TAIL2}']
    for qasm in programs:
        message = _refusal(qasm)
        assert MARKER not in message
        assert str(tmp_path) not in message and secret.name not in message
    assert opened == []
    secret.read_text()
    assert opened, "the hooks must see a Python read of the secret, or the check above proves nothing"


def test_problem_validation_reports_no_file_content(secret: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_problem({"kind": "circuit", "qasm": f'{Q2}include "{secret}";{TAIL2}'})
    text = str(caught.value)
    assert MARKER not in text
    assert INCLUDE_REFUSED in text
    assert [e["loc"] for e in caught.value.errors()] == [("circuit", "qasm")]


def test_a_huge_register_is_refused_fast_and_small(no_parser: None) -> None:
    qasm = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1000000]; creg c[1]; measure q[0] -> c[0];'
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = _refusal(qasm)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "more than 128 qubits" in message
    assert elapsed < 0.05
    assert peak < 256 * 1024


H2 = 'OPENQASM 2.0; include "qelib1.inc";\n'
H3 = 'OPENQASM 3.0; include "stdgates.inc";\n'
NESTED = "gate g1 a { x a; x a; }\n" + "".join(f"gate g{i + 1} a {{ g{i} a; g{i} a; }}\n" for i in range(1, 30))

OVERSIZED = {
    # qubits
    "qreg million": (H2 + "qreg q[1000000]; creg c[1];", "more than 128 qubits"),
    "qreg 129": (H2 + "qreg q[129]; creg c[1];", "more than 128 qubits"),
    "registers summing over": (H2 + "qreg a[100]; qreg b[29]; creg c[1];", "more than 128 qubits"),
    "many one-qubit registers": (H2 + "".join(f"qreg r{i}[1];" for i in range(129)), "more than 128 qubits"),
    "a size of 5000 digits": (H2 + "qreg q[" + "9" * 5000 + "];", "more than 128 qubits"),
    "qubit array million": (H3 + "qubit[1000000] q; bit c;", "more than 128 qubits"),
    "qubit arrays summing over": (H3 + "qubit[64] a; qubit[65] b; bit c;", "more than 128 qubits"),
    "many single qubits": (H3 + "".join(f"qubit q{i};" for i in range(129)), "more than 128 qubits"),
    "qasm3 qreg": (H3 + "qreg q[200];", "more than 128 qubits"),
    "hardware qubit": (H3 + "bit c; h $1000000; c = measure $1000000;", "more than 128 qubits"),
    "hardware qubit 128": (H3 + "bit c; h $128; c = measure $128;", "more than 128 qubits"),
    "declaration in an if body": (H3 + "bit c; if (c) { qubit[100000] q; }", "more than 128 qubits"),
    # classical bits
    "creg 129": (H2 + "qreg q[1]; creg c[129];", "more than 128 classical bits"),
    "cregs summing over": (H2 + "qreg q[1]; creg a[64]; creg b[65];", "more than 128 classical bits"),
    "bit array": (H3 + "qubit q; bit[1000000] c;", "more than 128 classical bits"),
    "many single bits": (H3 + "qubit q;" + "".join(f"bit c{i};" for i in range(129)),
                         "more than 128 classical bits"),
    # sizes the screen cannot read with certainty
    "hex size": (H2 + "qreg q[0x100];", "plain decimal"),
    "float size": (H2 + "qreg q[1e6];", "plain decimal"),
    "expression size": (H3 + "qubit[2 ** 20] q;", "plain decimal"),
    # operations
    "statements": (H2 + "qreg q[1]; creg c[1];" + "x q[0];" * 20_001, "more than 20000 statements"),
    "broadcast": (H2 + "qreg q[128]; creg c[128];" + "h q;" * 200, "more than 20000 operations"),
    "nested gates": (H2 + "qreg q[1]; creg c[1];" + NESTED + "g30 q[0];", "more than 20000 operations"),
    "nested gates qasm3": (H3 + "qubit q; bit c;" + NESTED + "g30 q;", "more than 20000 operations"),
    "slices": (H3 + "qubit[128] q; bit c;" + "h q[0:127];" * 200, "more than 20000 operations"),
    "alias": (H3 + "qubit[128] q; bit c; let big = " + " ++ ".join(["q"] * 200) + "; h big;",
              "more than 20000 operations"),
    "qasm3 tokens": (H3 + "qubit q; bit c;" + "x q;" * 10_000, "at most 30000 tokens"),
    # work multiplied after the screen
    "for loop": (H3 + "qubit q; bit c; for int i in [0:1000000000] { h q; }", "loops are not accepted"),
    "while loop": (H3 + "qubit q; bit c; while (true) { h q; }", "loops are not accepted"),
    "pow": (H3 + "qubit q; bit c; pow(1000000) @ x q;", "pow"),
    "chained ctrl": (H3 + "qubit[11] q; bit c; " + "ctrl @ " * 10 + "x " + ", ".join(f"q[{i}]" for i in range(11))
                     + ";", "at most one ctrl"),
    "ctrl count": (H3 + "qubit[2] q; bit c; ctrl(1000000) @ x q[0], q[1];", "ctrl(n)"),
    "ctrl on a user gate": (H3 + "qubit[2] q; bit c; gate g a { x a; } ctrl @ g q[0], q[1];", "standard gates"),
    "nesting": (H2 + "qreg q[1]; creg c[1]; rz(" + "(" * 100 + "1" + ")" * 100 + ") q[0];", "nested deeper"),
}


@pytest.mark.parametrize("case", list(OVERSIZED.values()), ids=list(OVERSIZED))
def test_oversized_programs_are_refused_before_any_parser(case: tuple[str, str], no_parser: None) -> None:
    qasm, expected = case
    started = time.process_time()  # CPU time: the refusal's own cost, not the shared machine's load
    message = _refusal(qasm + "\n")
    assert expected in message
    assert len(message) <= MAX_ERROR_CHARS
    assert time.process_time() - started < 1.0


ACCEPTED = {
    "bell": (BELL, 2),
    "ghz3": (GHZ3, 3),
    "include across lines": ('OPENQASM 2.0;\ninclude\n  "qelib1.inc"\n;\nqreg q[1]; creg c[1]; measure q -> c;', 1),
    "single quotes": ("OPENQASM 2.0; include 'qelib1.inc'; qreg q[1]; creg c[1]; measure q -> c;", 1),
    "no include": ("OPENQASM 2.0; qreg q[1]; creg c[1]; U(0,0,0) q[0]; measure q -> c;", 1),
    "comments": ("// a Bell pair\nOPENQASM 2.0; include \"qelib1.inc\"; // the library\n"
                 "qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c; // done", 2),
    "at the caps": ('OPENQASM 2.0; include "qelib1.inc"; qreg a[100]; qreg b[28]; creg c[128]; h a; '
                    "measure a[0] -> c[0];", 128),
    "user gates": ("OPENQASM 2.0; include \"qelib1.inc\"; gate bell a, b { h a; cx a, b; } "
                   "qreg q[2]; creg c[2]; bell q[0], q[1]; measure q -> c;", 2),
    "qasm3": (H3 + "qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;", 2),
    "qasm3 comments": ('OPENQASM 3.0; /* the library */ include "stdgates.inc"; // gates\n'
                                 "qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;", 2),
    "qasm3 hardware qubits": (H3 + "bit[2] c; h $0; cx $0, $1; c[0] = measure $0; c[1] = measure $1;", 2),
    "qasm3 modifiers": (H3 + "qubit[3] q; bit[3] c; ctrl(2) @ x q[0], q[1], q[2]; inv @ s q[0]; c = measure q;", 3),
    "qasm3 if": (H3 + "qubit[2] q; bit[2] c; h q[0]; c[0] = measure q[0]; if (c[0]) { x q[1]; } "
                 "c[1] = measure q[1];", 2),
}


@pytest.mark.parametrize("case", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_ordinary_programs_still_parse(case: tuple[str, int]) -> None:
    qasm, qubits = case
    assert parse_qasm(qasm).num_qubits == qubits


def test_parser_messages_are_short() -> None:
    message = _refusal("OPENQASM 2.0; qreg q[1]; creg c[1]; " + "f" * 5000 + " q[0];")
    assert message.startswith("unreadable OpenQASM")
    assert len(message) <= MAX_ERROR_CHARS


def test_parser_messages_mask_paths() -> None:
    message = circuits._parser_message(ValueError("cannot open /srv/qgate/keys/signing.pem, line 3"))
    assert "/srv" not in message and "signing.pem" not in message
    assert "line 3" in message
