"""A shell script or command line -> the vLLM servers it starts (on the host or in docker/podman containers)."""

from __future__ import annotations

from dataclasses import replace

from tpfit.vllm_facts import CURRENT_VLLM_VERSION
from tpfit.deployment.argv import parse_args, server_start, strip_prefixes
from tpfit.deployment.containers import inner_commands, read_run
from tpfit.deployment.facts import DeploymentFile, EnvVar, Format, Runtime, Unit, Word
from tpfit.deployment.flags import flag_table
from tpfit.deployment.shell import RESERVED_WORDS, TextStore, expand, is_assignment, script_commands


def units_in(cmds: list[list[Word]], variables: dict[str, str], depth: int = 0, *,
             ends_script: frozenset[int] = frozenset()) -> list[Unit]:
    """Every vLLM server the commands start, in order; `variables` collects `NAME=value` lines on the way. A
    server below one that `exec` started (`ends_script`: shell.script_commands) runs only instead of it."""
    out: list[Unit] = []
    first_exec = None
    for k, raw in enumerate(cmds):
        found = _units_of(raw, variables, depth)
        if first_exec is not None:
            found = [replace(u, alternative_of=first_exec) for u in found]
        elif found and k in ends_script:
            first_exec = len(out)
        out.extend(found)
    return out


def _units_of(raw: list[Word], variables: dict[str, str], depth: int) -> list[Unit]:
    while len(raw) > 1 and raw[0].text in RESERVED_WORDS:  # `then MODEL=x`, `do vllm serve ...`
        raw = raw[1:]
    if raw[0].text in ("export", "readonly", "local", "declare") and len(raw) > 1:
        raw = raw[1:]
    if all(is_assignment(w.text) for w in raw):
        for w in raw:
            name, value = w.text.split("=", 1)
            variables[name] = expand(value, variables)
        return []
    words, env, env_words = strip_prefixes(raw)
    if not words:
        return []
    prog = words[0].text.rsplit("/", 1)[-1]
    found = server_start(words)
    if found:
        i, positional = found
        cmd = parse_args(words[i:], flag_table(CURRENT_VLLM_VERSION), positional_model=positional,
                         anchor=words[i - 1], store=words[0].store, variables=variables)
        visible = env.get("CUDA_VISIBLE_DEVICES", variables.get("CUDA_VISIBLE_DEVICES", ""))
        ids = tuple(x for x in visible.split(",") if x) if visible and not visible.startswith("$") else ()
        return [Unit(name=cmd.model or "vllm", runtime=Runtime.HOST, command=cmd, where=words[0].where,
                     env=tuple(EnvVar(name=k, value=v, where=w.where) for (k, v), w in zip(env.items(), env_words)),
                     gpus=len(ids) if ids else None, gpus_where=words[0].where, gpu_ids=ids)]
    out: list[Unit] = []
    if prog in ("docker", "podman") and len(words) > 2:
        sub = words[1:]
        if sub[0].text == "container":
            sub = sub[1:]
        runtime = Runtime.PODMAN if prog == "podman" else Runtime.DOCKER
        if sub and sub[0].text == "run":
            unit = read_run(sub[1:], runtime, variables)
            if unit is not None:
                out.append(unit)
        elif sub and sub[0].text == "exec" and depth < 2:
            # `docker exec [-it] NAME vllm serve ...`: a server inside a container started elsewhere
            rest = [w for w in sub[1:]]
            while rest and rest[0].text.startswith("-"):
                rest = rest[2:] if rest[0].text in ("-e", "--env", "-u", "--user", "-w", "--workdir") else rest[1:]
            out.extend(units_in([rest[1:]], variables, depth + 1) if len(rest) > 1 else [])
    elif prog in ("echo", "printf", "bash", "sh") and depth < 2:
        # a command printed for the user to run, or `bash -c "vllm serve ..."`
        for w in words[1:]:
            if "vllm" in w.text and ("serve" in w.text or "api_server" in w.text):
                out.extend(units_in(inner_commands(w), variables, depth + 1))
    return out


def read_shell(text: str, name: str) -> DeploymentFile:
    store = TextStore(text=text)
    cmds, ends = script_commands(store)
    return DeploymentFile(name=name, format=Format.SHELL, units=tuple(units_in(cmds, {}, ends_script=ends)),
                          text=text)
