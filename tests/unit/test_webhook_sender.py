"""The sender against a local HTTPS server (a trustme CA): it connects to the checked address, while TLS
and the Host header use the name; it follows no redirect, reads a capped answer and times out."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import trustme

from webhooks.sender import Sender
from webhooks.ssrf import Target

SEEN: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        SEEN.append({"path": self.path, "host": self.headers["Host"],
                     "sni": getattr(self.connection, "qgate_sni", None) or ""})
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "https://127.0.0.1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(1.5)
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(10_000_000))
            self.end_headers()
            self.wfile.write(b"x" * 10_000_000)
        else:
            self.send_response(204)
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _serve(cert: trustme.LeafCert) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    def remember_sni(sock: ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
        sock.qgate_sni = name  # type: ignore[attr-defined]
    context.sni_callback = remember_sni
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    ca = trustme.CA()
    ca_file = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = _serve(ca.issue_cert("hooks.test"))
    yield ca_file, server.server_address[1]
    server.shutdown()


def _target(port: int, path: str, host: str = "hooks.test") -> Target:
    return Target(f"https://{host}:{port}{path}", "https", host, port, path, ("127.0.0.1",))


def test_connects_to_the_checked_address_with_the_name_for_sni_host_and_certificate(tls: tuple[Path, int]) -> None:
    ca_file, port = tls
    reply = Sender(ca_file).post(_target(port, "/hook"), b"{}", {})
    assert reply.status == 204 and reply.error is None
    assert SEEN[-1] == {"path": "/hook", "host": f"hooks.test:{port}", "sni": "hooks.test"}


def test_a_certificate_for_another_name_is_refused(tls: tuple[Path, int]) -> None:
    ca_file, port = tls
    reply = Sender(ca_file).post(_target(port, "/hook", host="other.test"), b"{}", {})
    assert reply.status is None and "doesn't match 'hooks.test'" in (reply.error or "")


def test_an_unknown_ca_is_refused(tls: tuple[Path, int]) -> None:
    _, port = tls
    reply = Sender(None).post(_target(port, "/hook"), b"{}", {})
    assert reply.status is None and reply.error


def test_redirects_are_not_followed(tls: tuple[Path, int]) -> None:
    ca_file, port = tls
    before = len(SEEN)
    reply = Sender(ca_file).post(_target(port, "/redirect"), b"{}", {})
    assert reply.status == 302 and len(SEEN) == before + 1


def test_a_slow_receiver_times_out(tls: tuple[Path, int]) -> None:
    ca_file, port = tls
    started = time.monotonic()
    reply = Sender(ca_file, read_timeout_s=0.5).post(_target(port, "/slow"), b"{}", {})
    assert reply.status is None and time.monotonic() - started < 1.4


def test_a_huge_answer_is_read_only_up_to_the_cap(tls: tuple[Path, int]) -> None:
    ca_file, port = tls
    started = time.monotonic()
    reply = Sender(ca_file, max_response_bytes=1024).post(_target(port, "/big"), b"{}", {})
    assert reply.status == 200 and time.monotonic() - started < 5
