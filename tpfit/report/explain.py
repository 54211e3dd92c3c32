"""`tpfit explain`'s diagnoses -> text (plain lines: they are read in terminals and pasted into issues)."""

from __future__ import annotations

from tpfit.live.explain import KNOWN_FAILURES, Diagnosis

EVIDENCE_CHARS = 300
"""Log text shown per diagnosis."""


def explain_text(found: list[Diagnosis]) -> str:
    if not found:
        return f"no known vLLM failure in this log (tpfit explain knows: {', '.join(KNOWN_FAILURES)})"
    return "\n".join(f"{d.kind}: {d.cause}\n  fix: {d.fix}\n  log: {d.evidence[:EVIDENCE_CHARS]}" for d in found)
