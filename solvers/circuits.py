"""OpenQASM parsing shared by validation and the circuit lanes.

The text arrives in HTTP requests, so it is screened on a token view before any parser sees it
(:func:`screen_qasm`). The parsers resolve ``include`` statements against the filesystem and allocate
whatever register a declaration asks for; the screen therefore admits only the standard gate library
as an include and bounds qubits, clbits, statements and the operations a program expands to. It errs
on the side of refusing: a program it cannot read with certainty is refused, not passed on.

Messages quote at most the user's own short tokens: never a path, never what a parser found elsewhere.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator, NamedTuple

MAX_QASM_CHARS = 200_000


MAX_QUBITS = 128  # the largest fake QPU device has 127 qubits; the sim lane allows 24
MAX_CLBITS = 128
MAX_STATEMENTS = 20_000
MAX_OPERATIONS = 20_000  # after broadcasting over registers and expanding user-defined gates
MAX_QASM3_TOKENS = 30_000  # the OpenQASM 3 parser (ANTLR in Python) spends ~70 µs on each token
MAX_NESTING = 64
MAX_SIZE_DIGITS = 6
MAX_ERROR_CHARS = 300

STANDARD_INCLUDE = {2: "qelib1.inc", 3: "stdgates.inc"}
INCLUDE_REFUSED = "only qelib1.inc / stdgates.inc may be included"
QASM3_REFUSED_WORDS = {
    "for": "loops are not accepted",
    "while": "loops are not accepted",
    "pow": "the pow modifier is not accepted",
}

_DISALLOWED_CHAR = re.compile(r"[^\t\n\r\x20-\x7e]")
_INCLUDE_WORD = re.compile("include", re.IGNORECASE)
_LEXEME = re.compile(
    r"""
      (?P<space>[\ \t\r\n]+)
    | (?P<comment>//[^\r\n]*|/\*.*?\*/)
    | (?P<string>"[^"\r\n]*"|'[^'\r\n]*')
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<hardware>\$[0-9]+)
    | (?P<number>[0-9.][0-9A-Za-z_.]*)
    | (?P<punct>->|[-+*/%^&|~!<>=:;,?@(){}\[\]])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_PATHLIKE = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.$~-]+){2,}[\\/]?|~[\\/]\S*")


class Token(NamedTuple):
    kind: str  # word | number | hardware | string | punct | other (always refused)
    text: str
    pos: int  # offset in the text; the line is counted only for a message


class _Refusal(Exception):
    """Raised inside the screen; :func:`screen_qasm` turns it into a ValueError naming the line."""

    def __init__(self, pos: int, reason: str) -> None:
        super().__init__(reason)
        self.pos, self.reason = pos, reason


def _clip(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


def _short(text: str) -> str:
    """A user's token, quoted only when short, so that a message never carries a long payload."""
    return repr(text) if len(text) <= 24 else repr(text[:21] + "...")


def tokenize(qasm: str) -> list[Token]:
    """The program's tokens without whitespace and comments.

    Only printable ASCII, tabs and line breaks are accepted anywhere (comments included), so that no
    Unicode line separator or look-alike letter can make the parsers see a program other than this
    one. A line comment ends at the first CR or LF, never later than the parsers end it.
    """
    if (bad := _DISALLOWED_CHAR.search(qasm)) is not None:
        raise _Refusal(bad.start(), f"only printable ASCII is accepted (found U+{ord(bad.group()):04X})")
    tokens = [Token(match.lastgroup or "other", match.group(), match.start())
              for match in _LEXEME.finditer(qasm) if match.lastgroup not in ("space", "comment")]
    for token in tokens:
        if token.kind == "other":
            quote = token.text in "\"'"
            raise _Refusal(token.pos, "unterminated string" if quote else f"unexpected character {token.text!r}")
    return tokens


def qasm_version(tokens: list[Token]) -> int:
    """3 for a program declaring ``OPENQASM 3``; 2 otherwise (the OpenQASM 2 parser then judges it)."""
    if len(tokens) >= 2 and tokens[0].text == "OPENQASM" and tokens[1].text.split(".")[0] == "3":
        return 3
    return 2


def _check_includes(qasm: str, tokens: list[Token], version: int) -> None:
    """Each include names the standard library exactly, and no string appears anywhere else.

    The raw text must hold ``include`` (in any case, as any part of a word, comments included) exactly
    as often as the token view has include statements: whatever a parser might read differently from
    this tokenizer, it cannot find an include that was not checked here.
    """
    allowed = f'"{STANDARD_INCLUDE[version]}"', f"'{STANDARD_INCLUDE[version]}'"
    includes = 0
    for i, token in enumerate(tokens):
        if token.kind == "word" and token.text == "include":
            includes += 1
            target = tokens[i + 1] if i + 1 < len(tokens) else None
            end = tokens[i + 2] if i + 2 < len(tokens) else None
            if target is None or target.text not in allowed or end is None or end.text != ";":
                raise _Refusal(token.pos, INCLUDE_REFUSED)
        elif token.kind == "string" and (i == 0 or tokens[i - 1].text != "include"):
            raise _Refusal(token.pos, f"strings are accepted only in an include; {INCLUDE_REFUSED}")
    if len(words := _INCLUDE_WORD.findall(qasm)) != includes:
        first = _INCLUDE_WORD.search(qasm) if words else None
        raise _Refusal(first.start() if first else 0,
                      f"'include' may appear only as an include statement; {INCLUDE_REFUSED}")


def _check_nesting(tokens: list[Token]) -> None:
    depth = 0
    for token in tokens:
        if token.text in ("(", "[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                raise _Refusal(token.pos, f"brackets nested deeper than {MAX_NESTING}")
        elif token.text in (")", "]", "}"):
            depth = max(depth - 1, 0)


def _check_qasm3_features(tokens: list[Token]) -> None:
    """Refuse loops and ``pow`` (both multiply work after the screen) and unbounded ``ctrl(n)``."""
    for i, token in enumerate(tokens):
        if token.kind != "word":
            continue
        if token.text in QASM3_REFUSED_WORDS:
            raise _Refusal(token.pos, QASM3_REFUSED_WORDS[token.text])
        if token.text in ("ctrl", "negctrl") and i + 1 < len(tokens) and tokens[i + 1].text == "(":
            window = tokens[i + 2:i + 4]
            if len(window) < 2 or window[1].text != ")" or _size(window[0]) > MAX_QUBITS:
                raise _Refusal(token.pos, f"{token.text}(n) needs a plain integer n up to {MAX_QUBITS}")


def _size(token: Token) -> int:
    """A plain decimal integer token's value; anything larger than the caps reads as ``MAX+1``."""
    if token.kind != "number" or not token.text.isdigit():
        raise _Refusal(token.pos, f"sizes and indices must be plain decimal integers, not {_short(token.text)}")
    return int(token.text) if len(token.text) <= MAX_SIZE_DIGITS else 10**MAX_SIZE_DIGITS


def _declared_size(tokens: list[Token], i: int, version: int) -> tuple[str, int] | None:
    """``(name, size)`` when ``tokens[i]`` begins a register declaration.

    ``qreg name[N]`` / ``creg name[N]`` (OpenQASM 3 also allows them without ``[N]``), and in
    OpenQASM 3 ``qubit[N] name``, ``bit[N] name``, ``qubit name``, ``bit name`` wherever they appear
    (a declaration may sit in an ``if`` body). A shape other than these is refused rather than guessed.
    """
    word = tokens[i].text
    rest = tokens[i + 1:i + 5]
    texts = [t.text for t in rest]
    if word in ("qreg", "creg"):
        if len(rest) >= 4 and rest[0].kind == "word" and texts[1] == "[" and texts[3] == "]":
            return rest[0].text, _size(rest[2])
        if version == 3 and len(rest) >= 2 and rest[0].kind == "word" and texts[1] == ";":
            return rest[0].text, 1
        raise _Refusal(tokens[i].pos, f"write '{word} name[N];' with N a plain decimal integer")
    if version == 3 and word in ("qubit", "bit"):
        if texts[:1] != ["["]:
            name = rest[0].text if rest and rest[0].kind == "word" else ""
            return name, 1
        if len(rest) >= 4 and texts[2] == "]" and rest[3].kind == "word":
            return rest[3].text, _size(rest[1])
        raise _Refusal(tokens[i].pos,
                       f"write '{word}[N] name;' with N a plain decimal integer, or '{word} name;'")
    return None


def _check_registers(tokens: list[Token], version: int) -> dict[str, int]:
    """Total qubits (declared, plus ``$n`` hardware qubits up to the highest n) and clbits under the caps.

    Returns each register's size, for the broadcast estimate of :func:`_check_operations`.
    """
    registers: dict[str, int] = {}
    totals = {"qubit": 0, "clbit": 0}
    hardware = 0
    for i, token in enumerate(tokens):
        if token.kind == "hardware":
            hardware = max(hardware, _size(Token("number", token.text[1:], token.pos)) + 1)
        elif token.kind == "word" and (declared := _declared_size(tokens, i, version)) is not None:
            name, size = declared
            registers[name] = size
            totals["qubit" if token.text in ("qreg", "qubit") else "clbit"] += size
        else:
            continue
        if totals["qubit"] + hardware > MAX_QUBITS:
            raise _Refusal(token.pos, f"more than {MAX_QUBITS} qubits")
        if totals["clbit"] > MAX_CLBITS:
            raise _Refusal(token.pos, f"more than {MAX_CLBITS} classical bits")
    return registers


def _statements(tokens: list[Token]) -> Iterator[tuple[list[Token], str | None]]:
    """Statements split at ``;``, ``{`` and ``}``, each with the name of the gate whose body holds it.

    The end of a gate body is announced by an empty statement carrying that gate's name.
    """
    current: list[Token] = []
    gate: str | None = None
    depth = 0  # braces open inside the current gate body
    for token in tokens:
        if token.text not in (";", "{", "}"):
            current.append(token)
            continue
        if current:
            yield current, gate
        if token.text == "{" and gate is None and len(current) >= 2 and current[0].text == "gate":
            gate, depth = current[1].text, 1
        elif token.text == "{" and gate is not None:
            depth += 1
        elif token.text == "}" and gate is not None:
            depth -= 1
            if depth == 0:
                yield [], gate
                gate = None
        current = []
    if current:
        yield current, gate


def _broadcast(statement: list[Token], registers: dict[str, int]) -> int:
    """An upper bound of the operations one statement applies by naming registers.

    A register named whole or indexed by anything but a single integer or variable (a slice, an
    index set) counts its full size; an index set longer than the register counts its length.
    """
    factor = 1
    commas = sum(1 for token in statement if token.text == ",")
    for j, token in enumerate(statement):
        if token.kind != "word" or token.text not in registers:
            continue
        index = statement[j + 1:j + 4]
        if len(index) == 3 and index[0].text == "[" and index[2].text == "]":
            continue
        width = registers[token.text]
        if index and index[0].text == "[":
            width = max(width, commas + 1)
        factor = max(factor, width)
    return factor


def _check_modifiers(statement: list[Token], calls_user_gate: bool) -> None:
    """At most one ``ctrl``/``negctrl`` per gate call, and only on a standard gate.

    Building a controlled gate is eager and expensive: ten chained ``ctrl @`` on ``rx`` take minutes,
    and ``ctrl(120) @`` on a user gate of 8,000 operations takes most of a minute.
    """
    controls = [t for t in statement if t.kind == "word" and t.text in ("ctrl", "negctrl")]
    if len(controls) > 1:
        raise _Refusal(controls[1].pos, "at most one ctrl/negctrl modifier per gate; use ctrl(n)")
    if controls and calls_user_gate:
        raise _Refusal(controls[0].pos, "ctrl/negctrl may modify only the standard gates")


def _check_operations(tokens: list[Token], registers: dict[str, int], version: int) -> None:
    """The operations the statements expand to (registers broadcast, user gates unrolled).

    A user gate costs what its body expands to, so gates nesting one another cannot hide exponential
    work that the parsers (and the lanes' transpilers) would then do. Each modifier (``inv @``) on a
    call counts the gate once more, since the importer rebuilds the gate's definition for it.
    """
    gate_cost: dict[str, int] = {}
    body_cost = 0
    operations = 0
    for statement, gate in _statements(tokens):
        if not statement and gate is not None:
            gate_cost[gate], body_cost = max(body_cost, 1), 0
            continue
        first = statement[0]
        if first.text == "gate" and gate is None:
            continue
        if first.text == "opaque" and len(statement) >= 2:
            gate_cost[statement[1].text] = 1
            continue
        if first.text == "let" and len(statement) >= 2:
            registers[statement[1].text] = sum(registers.get(t.text, 0) for t in statement[2:])
            continue
        called = [gate_cost[t.text] for t in statement if t.kind == "word" and t.text in gate_cost]
        if version == 3:
            _check_modifiers(statement, bool(called))
        callee = max(called or [1]) * (1 + sum(1 for t in statement if t.text == "@"))
        if gate is not None:
            body_cost = min(body_cost + callee, MAX_OPERATIONS + 1)
            continue
        operations = min(operations + callee * _broadcast(statement, registers), MAX_OPERATIONS + 1)
        if operations > MAX_OPERATIONS:
            raise _Refusal(first.pos, f"more than {MAX_OPERATIONS} operations once registers and gates expand")


def screen_qasm(qasm: str) -> int:
    """Refuse what the parsers must not see; return the OpenQASM version (2 or 3) to parse with.

    Cheap by construction (one regex pass and a few linear scans): a short program is judged in well
    under a millisecond; a 200,000-character one in under a second and about 20 MB at the peak.
    """
    if len(qasm) > MAX_QASM_CHARS:
        raise ValueError(f"OpenQASM refused: longer than {MAX_QASM_CHARS} characters")
    try:
        return _screen(qasm)
    except _Refusal as refusal:
        line = qasm.count("\n", 0, refusal.pos) + 1
        raise ValueError(_clip(f"OpenQASM refused at line {line}: {refusal.reason}")) from None


def _screen(qasm: str) -> int:
    tokens = tokenize(qasm)
    if not tokens:
        raise _Refusal(0, "the program is empty")
    if sum(1 for token in tokens if token.text == ";") > MAX_STATEMENTS:
        raise _Refusal(tokens[-1].pos, f"more than {MAX_STATEMENTS} statements")
    version = qasm_version(tokens)
    if version == 3 and len(tokens) > MAX_QASM3_TOKENS:
        raise _Refusal(tokens[MAX_QASM3_TOKENS].pos,
                       f"an OpenQASM 3 program may have at most {MAX_QASM3_TOKENS} tokens")
    _check_includes(qasm, tokens, version)
    _check_nesting(tokens)
    if version == 3:
        _check_qasm3_features(tokens)
    registers = _check_registers(tokens, version)
    _check_operations(tokens, registers, version)
    return version


def _parser_message(exc: Exception) -> str:
    """The parser's own message on one line, paths masked and length capped; a generic one otherwise."""
    import openqasm3.parser
    import qiskit.qasm2
    import qiskit.qasm3
    from qiskit.circuit.exceptions import CircuitError

    if isinstance(exc, RecursionError):
        return "unreadable OpenQASM: an expression is nested too deeply"
    readable = (qiskit.qasm2.QASM2ParseError, qiskit.qasm3.QASM3ImporterError,
                openqasm3.parser.QASM3ParsingError, CircuitError, ValueError)
    if not isinstance(exc, readable):
        return "unreadable OpenQASM: the parser could not read it"
    text = _PATHLIKE.sub("<path>", " ".join(str(exc).split()))
    return _clip(f"unreadable OpenQASM: {text}")


def _parse(qasm: str, version: int) -> Any:
    """Parse text that passed :func:`screen_qasm`; no file is ever opened.

    OpenQASM 2 gets an empty include path: ``qelib1.inc`` is built into the parser and nothing else
    can be found. The OpenQASM 3 importer builds ``stdgates.inc`` in and refuses any other include.
    """
    import qiskit.qasm2
    import qiskit.qasm3

    if version == 3:
        return qiskit.qasm3.loads(qasm)
    return qiskit.qasm2.loads(qasm, include_path=(), custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)


def _check_parsed(circuit: Any) -> None:
    """Backstop after parsing: the screen's bounds hold for the circuit the parser built."""
    if circuit.num_qubits == 0:
        raise ValueError("the circuit has no qubits")
    if circuit.num_qubits > MAX_QUBITS:
        raise ValueError(f"OpenQASM refused: more than {MAX_QUBITS} qubits")
    if circuit.num_clbits > MAX_CLBITS:
        raise ValueError(f"OpenQASM refused: more than {MAX_CLBITS} classical bits")
    if len(circuit.data) > MAX_OPERATIONS:
        raise ValueError(f"OpenQASM refused: more than {MAX_OPERATIONS} operations")
    if circuit.num_clbits == 0:
        raise ValueError("the circuit measures nothing: add measurements to get counts")


@lru_cache(maxsize=256)
def parse_qasm(qasm: str) -> Any:
    """Parse OpenQASM 2 or 3 into a QuantumCircuit; raise ValueError with a short, safe message."""
    version = screen_qasm(qasm)
    try:
        circuit = _parse(qasm, version)
    except Exception as exc:  # the parsers raise several unrelated types, RecursionError included
        raise ValueError(_parser_message(exc)) from None
    _check_parsed(circuit)
    return circuit


BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
GHZ3 = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg c[3]; h q[0]; cx q[0],q[1]; cx q[1],q[2]; '
        'measure q -> c;')
