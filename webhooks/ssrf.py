"""The SSRF guard for callback URLs: which URLs qgate will POST to, and at which addresses.

A callback URL is checked twice: when the job is submitted (a refusal is a 422) and again right before
each delivery. The check resolves the host once and returns a ``Target`` holding the addresses it
validated; the sender connects to one of those addresses and never asks DNS again, so a name that
answers with a public address at the check and 127.0.0.1 a moment later (DNS rebinding) cannot steer a
delivery inward.

Rules (see the README's Webhooks section):

* ``https`` only; ``http`` only when the policy allows it, and then only for allowed hosts.
* No user information (``https://public.example@127.0.0.1/``), no backslashes, whitespace or control
  characters, no IPv6 zone ids, no empty host, a port from 1 to 65535 (any port: the address check is
  the barrier, and TLS with name verification keeps a non-HTTPS service from answering meaningfully).
* IPv4 only as four canonical decimal numbers: ``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``
  are refused rather than interpreted, since clients and libraries disagree about what they mean.
* Every address the host resolves to must be public unicast: no loopback, private, link-local (cloud
  metadata at 169.254.169.254), CGNAT (100.64/10), multicast, reserved, unspecified, documentation or
  benchmarking ranges, in IPv4 or IPv6; IPv4 embedded in IPv6 (IPv4-mapped, NAT64 64:ff9b::/96, 6to4,
  Teredo) is checked as the IPv4 address it carries.
* An operator's allow-list entry matches the URL's host *as written*: a host name exactly, or an IP
  literal inside a listed CIDR. A name is never allowed because of the address DNS gives for it, so an
  allowed range cannot be reached by pointing a name at it.

Resolution is bounded in time (``resolve_timeout_s``); a resolver that does not answer in time raises
``ResolveTimeout``. The resolver is injectable (``Guard(resolver=...)``) so tests can control DNS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")
_NAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")
# Special-purpose ranges named here rather than left to the Python version's idea of is_private/is_global:
# IETF protocol assignments, documentation and benchmarking.
_SPECIAL = tuple(ipaddress.ip_network(net) for net in (
    "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16"))
# One small pool for every lookup of the process: a lookup that hangs ties up a pool thread, never the
# caller, and the pool's size bounds how many can hang at once.
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qgate-dns")


class UnsafeCallback(ValueError):
    """The URL may not be called; the message says why and is safe to show the client."""


class ResolveTimeout(UnsafeCallback):
    """The host did not resolve in time: possibly transient, so the ingress answers 503, not 422."""


@dataclass(frozen=True)
class Target:
    """A checked callback: where to connect (``addresses``, validated) and what to say (``host``)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system resolver, in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HostsFileResolver:
    """Names from a hosts-format file (``address name ...`` per line) before the system resolver.

    The file is read on every lookup, so it can be changed while the stack runs (the DNS-rebinding test
    does). Its answers are checked like any other: it pins names, it never lifts the guard.
    """

    def __init__(self, path: Path, fallback: Resolver = system_resolver) -> None:
        self.path, self.fallback = path, fallback

    def __call__(self, host: str, port: int) -> list[str]:
        found: list[str] = []
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and host in (name.lower() for name in parts[1:]):
                found.append(parts[0])
        return found or self.fallback(host, port)


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    try:
        ip: IPAddress = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            problem = address_problem(str(embedded[1]))
            return f"{address} ({embedded[0]} of {embedded[1]}): {problem}" if problem else None
        if ip in _NAT64_LOCAL:
            return f"{address} is a local-use NAT64 address"
    for test, what in _CATEGORIES:
        if test(ip):
            return f"{address} is {what}"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a transition form of IPv6 carries, and the form's name."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped form", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64 form", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None and ip in _6TO4:
        return "6to4 form", ip.sixtofour
    if ip.teredo is not None:
        server, client = ip.teredo
        return "Teredo form", client if address_problem(str(client)) else server
    return None


_CATEGORIES: tuple[tuple[Callable[[IPAddress], bool], str], ...] = (
    (lambda ip: ip.is_unspecified, "unspecified"),
    (lambda ip: ip.is_loopback, "a loopback address"),
    (lambda ip: ip.is_link_local, "a link-local address (cloud metadata lives there)"),
    (lambda ip: ip.is_multicast, "a multicast address"),
    (lambda ip: isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "a shared (CGNAT) address"),
    (lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
    (lambda ip: ip.is_reserved, "a reserved address"),
    (lambda ip: any(ip in net for net in _SPECIAL if net.version == ip.version),
     "a special-purpose address (protocol assignment, documentation or benchmarking)"),
    (lambda ip: ip.is_private, "a private or special-purpose address"),
    (lambda ip: not ip.is_global, "not a global address"),
)


@dataclass(frozen=True)
class Policy:
    """What the operator allows beyond the rules: plain http (for allowed hosts), and allowed hosts."""

    allow_http: bool = False
    allow_names: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    resolve_timeout_s: float = 2.0

    @classmethod
    def of(cls, allow_hosts: Iterable[str] = (), allow_http: bool = False,
           resolve_timeout_s: float = 2.0) -> "Policy":
        """``allow_hosts``: host names, IP addresses or CIDRs (``QGATE_WEBHOOK_ALLOW_HOSTS``)."""
        names, networks = set(), []
        for entry in (item.strip().lower() for item in allow_hosts):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        return cls(allow_http, frozenset(names), tuple(networks), resolve_timeout_s)

    def allows(self, host: str, literal: IPAddress | None) -> bool:
        if literal is not None:
            return any(literal in network for network in self.allow_networks)
        return host in self.allow_names


@dataclass
class Guard:
    """Checks callback URLs under a policy, resolving names with ``resolver``."""

    policy: Policy = field(default_factory=Policy)
    resolver: Resolver = system_resolver

    def check(self, url: str) -> Target:
        """The checked target of ``url``; raises UnsafeCallback (or ResolveTimeout) saying why not."""
        scheme, host, port, path, literal = _split(url)
        allowed = self.policy.allows(host, literal)
        if scheme != "https" and not (scheme == "http" and self.policy.allow_http and allowed):
            raise UnsafeCallback("callback_url must use https" + (
                "" if self.policy.allow_http else " (plain http is off: QGATE_WEBHOOK_ALLOW_HTTP)"))
        addresses = [str(literal)] if literal is not None else self._resolve(host, port)
        if not allowed:
            for address in addresses:
                problem = address_problem(address)
                if problem:
                    where = "" if literal is not None else f"{host} resolves to {address}: "
                    raise UnsafeCallback(f"callback_url must reach a public address: {where}{problem}")
        return Target(url, scheme, host, port, path, tuple(addresses))

    def _resolve(self, host: str, port: int) -> list[str]:
        future = _LOOKUPS.submit(self.resolver, host, port)
        try:
            addresses = future.result(timeout=self.policy.resolve_timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ResolveTimeout(f"callback_url host {host} did not resolve within "
                                 f"{self.policy.resolve_timeout_s:g} s; retry later") from None
        except (OSError, UnicodeError):
            raise UnsafeCallback(f"callback_url host {host} does not resolve") from None
        if not addresses:
            raise UnsafeCallback(f"callback_url host {host} does not resolve")
        return [str(address) for address in addresses]


def _split(url: str) -> tuple[str, str, int, str, IPAddress | None]:
    """Scheme, host (lowercase, IDNA), port, path with query, and the IP literal if the host is one."""
    if not isinstance(url, str) or not url:
        raise UnsafeCallback("callback_url must be a URL")
    if _FORBIDDEN_CHARS.search(url):
        raise UnsafeCallback("callback_url must not contain whitespace, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeCallback("callback_url must be an https URL")
    if "@" in parts.netloc:
        raise UnsafeCallback("callback_url must not contain user information (user@host)")
    try:
        port = parts.port if parts.port is not None else (443 if scheme == "https" else 80)
    except ValueError:
        raise UnsafeCallback("callback_url has an invalid port") from None
    if not 1 <= port <= 65535:
        raise UnsafeCallback("callback_url has an invalid port")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise UnsafeCallback("callback_url has no host")
    host, literal = _host(raw_host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, path, literal


def _host(raw: str) -> tuple[str, IPAddress | None]:
    if "%" in raw:
        raise UnsafeCallback("callback_url must not use an IPv6 zone id" if ":" in raw else
                             "callback_url has an invalid host name: percent-encoded characters are not allowed")
    if ":" in raw:
        try:
            return raw, ipaddress.IPv6Address(raw)
        except ValueError:
            raise UnsafeCallback("callback_url has an invalid IPv6 address") from None
    name = raw[:-1] if raw.endswith(".") else raw
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            return name, ipaddress.IPv4Address(name)
        except ValueError:
            raise UnsafeCallback("callback_url: an IPv4 address must be four decimal numbers (a.b.c.d, no "
                                 "leading zeros, hex or single-number forms)") from None
    try:
        name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeCallback("callback_url has an invalid host name") from None
    if len(name) > 253 or not all(_NAME_LABEL.fullmatch(label) for label in name.split(".")):
        raise UnsafeCallback("callback_url has an invalid host name")
    return name, None
