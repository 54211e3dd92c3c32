"""`docker run` / `podman run` options: GPUs, shared memory, environment, volumes, image; then the server.

Option names as docker's and podman's `run --help` print them; GPU forms from the NVIDIA Container Toolkit
(`--gpus all`, `--gpus 2`, `--gpus '"device=0,1"'`) and podman's CDI (`--device nvidia.com/gpu=all`).
"""

from __future__ import annotations

import re

from tpfit.vllm_facts import CURRENT_VLLM_VERSION, read_release, unpublished, unpublished_text
from tpfit.deployment.argv import parse_args, server_start, strip_prefixes
from tpfit.deployment.facts import EnvVar, Runtime, Unit, VllmCommand, Where, Word
from tpfit.deployment.flags import flag_table
from tpfit.deployment.shell import TextStore, commands, expand
from tpfit.units import parse_size

_NO_VALUE = {"-d", "--detach", "--rm", "-i", "-t", "--interactive", "--tty", "--privileged", "--init", "-P",
             "--publish-all", "--read-only", "--no-healthcheck", "--oom-kill-disable", "-q", "--quiet",
             "--disable-content-trust", "--replace", "--sig-proxy", "--tls-verify", "--rmi", "--http-proxy"}
_SHORT_BOOLS = set("dtiPq")
_TAG = re.compile(r"(?:^|[:@-])v?(\d+\.\d+(?:\.\d+){0,2}(?:\.post\d+)?)")


def tag_version(image: str | None) -> str | None:
    """The version an image tag spells (`vllm/vllm-openai:v0.26.0-cu130` -> "0.26.0"), release or not."""
    if not image or ":" not in image.rsplit("/", 1)[-1]:
        return None
    m = _TAG.search(image.rsplit(":", 1)[1])
    return m.group(1) if m else None


def image_version(image: str | None) -> str | None:
    """The vLLM release an image tag names: `vllm/vllm-openai:v0.8.5` -> 0.8.5, `:v0.8.5.post1` -> 0.8.5.post1
    (`read_release`); a tag that spells a version vLLM never released -> the release it was meant to be
    (`:v0.26.0.1` -> 0.26.0, `:v0.26.1` -> 0.26.0, its minor's latest; `image_tag_problem` says why); `:latest` and
    no tag -> None."""
    text = tag_version(image)
    if text is None:
        return None
    try:
        release = read_release(text)
    except ValueError:
        release = read_release(".".join(text.split(".")[:3]))
    same = unpublished(release)
    return same[-1] if same else release.name


def image_tag_problem(image: str | None) -> str | None:
    """Why the image's tag names no vLLM release (`vLLM has no release 0.26.0.1 ...`, `... 0.26.1 (0.26's are
    0.26.0)`), or None when it names one or no version at all."""
    text = tag_version(image)
    if text is None:
        return None
    try:
        release = read_release(text)
    except ValueError as err:
        return str(err)
    same = unpublished(release)
    return unpublished_text(release, same) if same is not None else None


def is_vllm_image(image: str) -> bool:
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return "vllm" in name.lower()


VOLUME_MODES = {"ro", "rw", "z", "Z", "cached", "delegated", "consistent", "shared", "slave", "private", "rshared",
                "rslave", "rprivate", "nocopy", "ro,z", "ro,Z", "rw,z", "rw,Z", "U"}


def volume_target(spec: str) -> str:
    """The container path of a `-v SRC:DST[:MODE]` / compose short volume (SRC may hold `${VAR:-x}`)."""
    parts = spec.split(":")
    if len(parts) > 1 and parts[-1] in VOLUME_MODES:
        parts = parts[:-1]
    return parts[-1]


def _gpus_value(value: str) -> tuple[int | None, tuple[str, ...]]:
    v = value.strip().strip("'\"")
    if v == "all" or v == "":
        return None, ()
    if v.isdigit():
        return int(v), ()
    m = re.search(r"device=([^\"']+)", v)
    if m:
        ids = tuple(x for x in m.group(1).split(",") if x)
        return len(ids), ids
    m = re.search(r"count=(\d+)", v)
    if m:
        return int(m.group(1)), ()
    return None, ()


def mount_fields(value: str) -> dict[str, str]:
    """docker's `--mount` value as its fields: CSV, so a quoted field keeps its commas (`"source=/m/a,b"`, as
    deploy/shell.py `bind_mount` writes a path holding one)."""
    import csv

    try:
        row = next(csv.reader([value]), [])
    except csv.Error:
        row = value.split(",")
    return dict(p.split("=", 1) for p in row if "=" in p)


def container_ports(spec: str) -> tuple[int, ...]:
    """The container ports of a `-p` / compose short port spec: `8000:8000`, `127.0.0.1:8080:8000`, `8000`,
    `8000-8001:8000-8001/tcp`; () for a variable or what is not a port."""
    target = spec.rsplit("/", 1)[0].rsplit(":", 1)[-1]
    low, _, high = target.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        return ()
    return tuple(range(int(low), int(high or low) + 1)) if int(high or low) - int(low) < 1024 else (int(low),)


def size_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(str(text).lower().replace("i", "").replace("b", "") or "x")
    except ValueError:
        return None


def read_run(words: list[Word], runtime: Runtime, variables: dict[str, str]) -> Unit | None:
    """One `docker run ...` / `podman run ...` (words after `run`): the unit, or None when it starts no vLLM."""
    env: list[EnvVar] = []
    mounts: list[str] = []
    gpus, gpu_ids, gpus_where, ipc_host, shm = None, (), Where(), False, None
    entrypoint: str | None = None
    published: list[int] | None = None
    host_network = False
    i = 0
    while i < len(words) and words[i].text.startswith("-") and words[i].text != "-":
        w = words[i]
        opt, eq, inline = w.text.partition("=")
        takes = not eq and opt not in _NO_VALUE and not (
            opt.startswith("-") and not opt.startswith("--") and set(opt[1:]) <= _SHORT_BOOLS)
        value = inline if eq else (words[i + 1].text if takes and i + 1 < len(words) else None)
        i += 2 if takes else 1
        if value is None:
            continue
        value = expand(value, variables)
        if opt == "--gpus":
            gpus, gpu_ids = _gpus_value(value)
            gpus_where = w.where
        elif opt == "--device" and value.startswith("nvidia.com/gpu="):
            sel = value.split("=", 1)[1]
            if sel != "all":
                gpu_ids = gpu_ids + (sel,)
                gpus = len(gpu_ids)
            gpus_where = w.where
        elif opt == "--ipc":
            ipc_host = value == "host"
        elif opt == "--shm-size":
            shm = size_or_none(value)
        elif opt in ("-e", "--env"):
            name, has, val = value.partition("=")
            env.append(EnvVar(name=name, value=val if has else None, where=w.where))
            if name == "NVIDIA_VISIBLE_DEVICES" and has and val not in ("all", ""):
                gpu_ids = tuple(val.split(","))
                gpus, gpus_where = len(gpu_ids), w.where
        elif opt in ("-v", "--volume"):
            mounts.append(volume_target(value))
        elif opt == "--mount":
            fields = mount_fields(value)
            mounts.append(fields.get("target") or fields.get("destination") or fields.get("dst") or "")
            if fields.get("target") == "/dev/shm":
                ipc_host = ipc_host or fields.get("type") == "bind"
        elif opt == "--entrypoint":
            entrypoint = value
        elif opt in ("-p", "--publish"):
            found = container_ports(value)
            host_network = host_network or not found  # a port set when it runs ($PORT): not known here
            published = (published or []) + list(found)
        elif opt in ("--network", "--net") and value == "host":
            host_network = True  # the host's network: every port of the container is the host's
    if i >= len(words):
        return None
    image_word = words[i]
    image = expand(image_word.text, variables)
    rest = words[i + 1:]
    version = image_version(image) or CURRENT_VLLM_VERSION
    table = flag_table(version)
    command = _server_in(rest, entrypoint, image_word, is_vllm_image(image), table, variables)
    if command is None:
        return None
    volume_shm = "/dev/shm" in mounts
    return Unit(name=image, runtime=runtime, command=command, where=words[0].where, image=image,
                image_where=image_word.where, gpus=gpus, gpus_where=gpus_where, ipc_host=ipc_host or volume_shm,
                shm_bytes=shm, env=tuple(env), mounts=tuple(m for m in mounts if m), gpu_ids=gpu_ids,
                published=None if host_network or published is None else tuple(published), handle=image_word)


def _server_in(rest: list[Word], entrypoint: str | None, image_word: Word, vllm_image: bool, table,
               variables: dict[str, str]) -> VllmCommand | None:
    """The vLLM command a container runs: the image's own server (args after the image), `vllm serve` given
    as the command, or a `bash -c "..."` string that starts one."""
    store = image_word.store
    if entrypoint is None and rest:
        start = server_start(rest)
        if start:
            i, positional = start
            return parse_args(rest[i:], table, positional_model=positional, anchor=rest[i - 1], store=store,
                              variables=variables)
    if entrypoint is None and vllm_image:
        return parse_args(rest, table, positional_model=True, anchor=image_word, store=store, variables=variables)
    if entrypoint is not None and entrypoint.rsplit("/", 1)[-1] in ("bash", "sh") and len(rest) >= 2 \
            and rest[0].text == "-c":
        return inner_server(rest[1], table, variables)
    if entrypoint is not None and entrypoint.rsplit("/", 1)[-1] == "vllm" and rest and rest[0].text == "serve":
        return parse_args(rest[1:], table, positional_model=True, anchor=rest[0], store=store, variables=variables)
    return None


def inner_commands(word: Word) -> list[list[Word]]:
    """The commands inside a `sh -c "..."` / `echo '...'` string. Their words point into the outer text when the
    string holds no escapes (so a fix can edit them); otherwise into a read-only copy."""
    outer = word.store
    text = word.text
    raw_start = word.span[0] + (1 if isinstance(outer, TextStore) and outer.text[word.span[0]:word.span[0] + 1]
                                in "'\"" else 0)
    mapped = isinstance(outer, TextStore) and outer.text[raw_start:raw_start + len(text)] == text
    sub = TextStore(text=text, first_line=word.where.line, path=word.where.path, read_only=not mapped)
    out = []
    for cmd in commands(sub):
        if mapped:
            cmd = [Word(text=w.text, where=outer.where(w.span[0] + raw_start),
                        span=(w.span[0] + raw_start, w.span[1] + raw_start), store=outer) for w in cmd]
        out.append(cmd)
    return out


def inner_server(word: Word, table, variables: dict[str, str]) -> VllmCommand | None:
    """The vLLM server a `sh -c "..."` string starts."""
    for cmd in inner_commands(word):
        cmd, _, _ = strip_prefixes(cmd)
        found = server_start(cmd)
        if found:
            i, positional = found
            return parse_args(cmd[i:], table, positional_model=positional, anchor=cmd[i - 1], store=cmd[0].store,
                              variables=variables)
    return None
