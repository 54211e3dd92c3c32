"""`tpfit check` output: compiler-style lines, JSON, and SARIF 2.1.0 for code-scanning."""

from __future__ import annotations

from tpfit.check.findings import Kind, Severity
from tpfit.check.run import CheckReport

SCHEMA_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
RULE_HELP = {
    Kind.UNKNOWN_FLAG: "A flag the image's vLLM release does not have: vLLM's argument parser refuses to start.",
    Kind.DEPRECATED_FLAG: "A flag vLLM deprecates: a later release removes it.",
    Kind.FLAG_VALUE: "A flag value vLLM's argument parser refuses.",
    Kind.LAYOUT: "A tensor/pipeline/data-parallel layout vLLM refuses for this model (its own check and message).",
    Kind.MEMORY: "vLLM's memory accounting: refused at start, or out of memory once serving.",
    Kind.CAPACITY: "How many tokens and requests the KV cache holds.",
    Kind.GPU_COUNT: "GPUs given to the container vs the GPUs the layout uses.",
    Kind.SHARED_MEMORY: "Multi-GPU vLLM needs /dev/shm larger than a container's 64 MB default.",
    Kind.PODMAN_IPC: "podman-compose ignores ipc: host.",
    Kind.STARTUP_PROBE: "A probe that kills the server before the model has loaded.",
    Kind.PROBE_PORT: "A probe, health check or published port that is not the port the server listens on.",
    Kind.IMAGE: "The image tag: pinned, and built for a CUDA the host driver runs.",
    Kind.SECRET: "A token or key written into the file.",
    Kind.HF_CACHE: "No Hugging Face cache volume: the model is downloaded at every start.",
    Kind.MODEL_MOUNT: "A container serving a model folder by its path with nothing mounted there.",
    Kind.TRUST_REMOTE_CODE: "--trust-remote-code for a model vLLM implements itself.",
    Kind.ENFORCE_EAGER: "--enforce-eager (no CUDA graphs) where graphs fit.",
    Kind.GPU_UTILIZATION: "Servers sharing a GPU whose --gpu-memory-utilization add up to more than the card.",
    Kind.NOT_CHECKED: "What tpfit could not check, and what would let it.",
    Kind.LINE_ENDINGS: "A shell script with Windows (CRLF) line endings: bash passes each CR into the command line.",
}


def render_text(report: CheckReport) -> str:
    name = report.file.name
    lines = []
    for f in report.findings:
        lines.append(f"{name}:{f.where.line}: {f.severity.value}[{f.kind.value}] {f.message}")
        if f.where.path:
            lines.append(f"    at: {f.where.path}")
        if f.vllm:
            lines.append(f"    vLLM: {f.vllm}")
        if f.fix:
            lines.append(f"    fix: {f.fix}")
    counts = {s: sum(1 for f in report.findings if f.severity is s) for s in Severity}
    units = ", ".join(f"{u.name} ({u.runtime.value})" if u.alternative_of is None else
                      f"or {u.name} ({u.runtime.value}, line {u.where.line}, in another branch)"
                      for u in report.file.units).replace(", or ", " or ")
    servers = sum(u.alternative_of is None for u in report.file.units)
    lines.append(f"{name}: {servers} vLLM server(s): {units}; {counts[Severity.ERROR]} error(s), "
                 f"{counts[Severity.WARNING]} warning(s), {counts[Severity.INFO]} note(s)")
    return "\n".join(lines) + "\n"


def report_dict(report: CheckReport) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "file": report.file.name,
        "format": report.file.format.value,
        "servers": [{"name": u.name, "runtime": u.runtime.value, "model": u.command.model, "image": u.image,
                     "gpus": u.gpus, "line": u.where.line, "path": u.where.path, "alternative_of": u.alternative_of}
                    for u in report.file.units],
        "findings": [f.to_dict() for f in report.findings],
        "exit_code": report.exit_code,
    }


def sarif_dict(report: CheckReport, *, version: str) -> dict:
    """One SARIF 2.1.0 run: a rule per finding kind, a result per finding (OASIS SARIF 2.1.0 §3)."""
    kinds = sorted({f.kind for f in report.findings}, key=lambda k: k.value)
    results = []
    for f in report.findings:
        text = f.message + (f" vLLM: {f.vllm}" if f.vllm else "") + (f" Fix: {f.fix}" if f.fix else "")
        location = {"physicalLocation": {"artifactLocation": {"uri": report.file.name}}}
        if f.where.line > 0:
            location["physicalLocation"]["region"] = {"startLine": f.where.line}
        if f.where.path:
            location["logicalLocations"] = [{"fullyQualifiedName": f.where.path}]
        results.append({"ruleId": f.kind.value, "ruleIndex": kinds.index(f.kind), "level": _SARIF_LEVEL[f.severity],
                        "message": {"text": text}, "locations": [location]})
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "tpfit", "version": version, "informationUri": "https://github.com/tpfit/tpfit",
                "rules": [{"id": k.value, "shortDescription": {"text": RULE_HELP[k]}} for k in kinds],
            }},
            "results": results,
        }],
    }
