"""OpenQASM parsing shared by validation and the circuit lanes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=256)
def parse_qasm(qasm: str) -> Any:
    """Parse OpenQASM 2 or 3 into a QuantumCircuit; raise ValueError with the parser's message."""
    import qiskit.qasm2
    import qiskit.qasm3

    text = qasm.lstrip()
    try:
        if text.startswith("OPENQASM 3"):
            circuit = qiskit.qasm3.loads(qasm)
        else:
            circuit = qiskit.qasm2.loads(qasm, custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    except Exception as exc:  # the parsers raise several unrelated types
        raise ValueError(f"unreadable OpenQASM: {exc}") from None
    if circuit.num_qubits == 0:
        raise ValueError("the circuit has no qubits")
    if circuit.num_clbits == 0:
        raise ValueError("the circuit measures nothing: add measurements to get counts")
    return circuit


BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
GHZ3 = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg c[3]; h q[0]; cx q[0],q[1]; cx q[1],q[2]; '
        'measure q -> c;')
