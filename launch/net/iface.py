"""Which network interface a multi-node run talks on, and telling gloo so.

gloo binds the interface its host name resolves to. On a cluster node whose
name does not resolve (or resolves to 127.0.1.1, as Debian's /etc/hosts has
it) that is loopback: the peers cannot connect and the run dies in a long
traceback. So every multi-node path pins ``GLOO_SOCKET_IFNAME`` itself:

- the launcher (``ttabench run --nnodes N``, one per node under Slurm) before
  it starts the workers, from ``--local-addr`` when given, otherwise from the
  route to the rendezvous host; it also fills in ``--local-addr`` with that
  address, so torch never has to resolve the node's name;
- a worker started some other way (``torchrun`` by hand, TorchX) from the
  route to ``MASTER_ADDR``, before it creates its process group.

A value the user (or ``ttabench netlab run``) already set is kept. Anything
that makes the interface impossible to find is one clear error line.
IPv4 only; Linux (the interface of an address is read with SIOCGIFADDR).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from ttabench import UserError

ENV = "GLOO_SOCKET_IFNAME"
_SIOCGIFADDR = 0x8915


def interface_addresses() -> dict[str, str]:
    """{interface name: its IPv4 address} for every interface that has one."""
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on this interface
                continue
            out[name] = socket.inet_ntoa(packed[20:24])
    return out


def resolve(host: str, what: str) -> str:
    """HOST (a name or an IPv4 address) -> IPv4 address; one clear line when it does not resolve."""
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError) as e:
        raise UserError(f"{what} {host!r} does not resolve on this node ({e}): give its IP address") from None


def route_source(addr: str) -> str:
    """This node's address on the route to `addr` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((addr, 9))
        except OSError as e:
            raise UserError(f"no route from this node to {addr} ({e.strerror or e})") from None
        return s.getsockname()[0]


def interface_of(addr: str, what: str) -> str:
    """The name of the interface that holds `addr`; one clear line when none does."""
    addresses = interface_addresses()
    for name, a in addresses.items():
        if a == addr:
            return name
    have = ", ".join(f"{n} {a}" for n, a in sorted(addresses.items())) or "none"
    raise UserError(f"{what} {addr} is not an address of this node (its interfaces: {have})")


def pick(local_addr: str | None, peer_host: str, peer_what: str) -> tuple[str, str]:
    """(interface, address) this node should use: the one holding --local-addr, or the one on
    the route to `peer_host` (the rendezvous host or MASTER_ADDR)."""
    if local_addr:
        addr = resolve(local_addr, "--local-addr")
        return interface_of(addr, "--local-addr"), local_addr
    addr = route_source(resolve(peer_host, peer_what))
    return interface_of(addr, f"the route to {peer_what} {peer_host} leaves from"), addr


def endpoint_host(endpoint: str) -> str:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
    return host.strip("[]")


def for_launcher(local_addr: str | None, rdzv_endpoint: str, environ=None) -> str:
    """Pin gloo's interface for a multi-node launcher; returns the local address to use."""
    environ = os.environ if environ is None else environ
    name, addr = pick(local_addr, endpoint_host(rdzv_endpoint), "the rendezvous host")
    environ.setdefault(ENV, name)
    return addr


def for_worker(environ=None) -> None:
    """In a worker of a multi-node group started without ttabench's launcher: pin gloo's
    interface from the route to MASTER_ADDR, unless it is set."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV) or not environ.get("MASTER_ADDR"):
        return
    if int(environ.get("WORLD_SIZE", 1)) <= int(environ.get("LOCAL_WORLD_SIZE", 1)):
        return  # one node: the host name's interface reaches every peer
    environ[ENV] = pick(None, environ["MASTER_ADDR"], "MASTER_ADDR")[0]
