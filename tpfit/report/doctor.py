"""Doctor findings -> terminal table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tpfit.kinds import FindingStatus
from tpfit.live.doctor import Finding
from tpfit.live.host import HostSnapshot

_STYLE = {FindingStatus.OK: "green", FindingStatus.WARN: "yellow", FindingStatus.FAIL: "red"}


def render_findings(host: HostSnapshot, findings: list[Finding], console: Console) -> None:
    console.print(f"Host read through {escape(host.source)}: {len(host.gpus)} GPU(s), driver "
                  f"{escape(host.driver_version or 'none')}")
    t = Table()
    t.add_column("status", no_wrap=True)
    t.add_column("check")
    t.add_column("evidence")
    t.add_column("fix")
    for f in findings:
        t.add_row(f"[{_STYLE[f.status]}]{f.status}[/]", escape(f.title), escape(f.evidence), escape(f.fix))
    console.print(t)
