"""RFC 8785 canonical JSON for problem fingerprints: the one shared implementation in ``audit.canonical``.

Fast for the shapes problems have (large lists of plain numbers go through the C encoder) and byte for
byte ``rfc8785``'s, which stays the reference and the fallback. It lives in ``audit.canonical`` because
the audit log's hashes and signatures are taken over the same form; ``audit`` imports nothing from
``solvers``, and this module is the only place ``solvers`` imports from ``audit``.
"""

from __future__ import annotations

from audit.canonical import canonical_json

__all__ = ["canonical_json"]
