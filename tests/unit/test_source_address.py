"""`api.auth.source_address` under hostile forwarding headers, with QGATE_TRUSTED_PROXIES unset and set.

Unset, nothing a caller writes moves the address. Set to N, the N-th X-Forwarded-For entry from the right
(the one the outermost trusted proxy appended) is used when it is an IP address; anything else there (a
proxy reached directly, garbage, a header of a thousand hops) falls back to the connection's address.
``Forwarded`` (RFC 7239) is never read.
"""

from __future__ import annotations

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api.auth import source_address

PEER = "10.0.0.9"


def _app(trusted: int) -> Flask:
    app = Flask("t")
    app.add_url_rule("/", "where", source_address)
    if trusted:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted, x_proto=0, x_host=0, x_port=0, x_prefix=0)
    return app


def _seen(trusted: int, headers: dict[str, str]) -> str:
    reply = _app(trusted).test_client().get("/", headers=headers, environ_base={"REMOTE_ADDR": PEER})
    return reply.get_data(as_text=True)


CASES = {
    "no header": ({}, PEER, PEER),
    "one hop": ({"X-Forwarded-For": "203.0.113.7"}, PEER, "203.0.113.7"),
    "caller's own entry left of the proxy's": ({"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}, PEER, "203.0.113.7"),
    "garbage": ({"X-Forwarded-For": "not-an-ip"}, PEER, PEER),
    "ip with a port": ({"X-Forwarded-For": "203.0.113.7:443"}, PEER, PEER),
    "empty entries": ({"X-Forwarded-For": ",,, ,"}, PEER, PEER),
    "a thousand hops": ({"X-Forwarded-For": ", ".join(["198.51.100.1"] * 999 + ["203.0.113.7"])}, PEER, "203.0.113.7"),
    "non-ascii": ({"X-Forwarded-For": "\u00e9\u00e9".encode().decode("latin-1")}, PEER, PEER),
    "forwarded only": ({"Forwarded": "for=203.0.113.7"}, PEER, PEER),
    "forwarded garbage": ({"Forwarded": 'for="[::1;by=;;'}, PEER, PEER),
    "ipv6 normalised": ({"X-Forwarded-For": "2001:DB8:0:0::1"}, PEER, "2001:db8::1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("trusted", [0, 1])
def test_source_address_under_hostile_forwarding_headers(case: str, trusted: int) -> None:
    headers, untrusted_expected, trusted_expected = CASES[case]
    assert _seen(trusted, headers) == (trusted_expected if trusted else untrusted_expected)
