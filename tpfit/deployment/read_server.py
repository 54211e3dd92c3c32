"""A running vLLM server as a deployment: what it says about itself (/version, /v1/models, cache_config_info,
the start-up log when given), in the same values a file gives (live/server_facts.py reads it)."""

from __future__ import annotations

from tpfit.deployment.facts import Arg, DeploymentFile, Format, Runtime, Unit, VllmCommand, Where
from tpfit.live.server_facts import ServerFacts
from tpfit.vllm_facts import build_release, image_for


def _arg(name: str, value: object, path: str) -> Arg:
    return Arg(flag=name, name=name, value=str(value), where=Where(path=path), words=())


def read_server(url: str, *, log_text: str | None = None) -> ServerFacts:
    """What the server at `url` says about itself (ServerError, one line, when it cannot be read)."""
    import asyncio

    from tpfit.live.client import VllmClient
    from tpfit.live.server_facts import read_server_facts

    async def read() -> ServerFacts:
        async with VllmClient(url) as client:
            return await read_server_facts(client, log_text=log_text)

    return asyncio.run(read())


def server_deployment(facts: ServerFacts, *, tp: int | None = None, pp: int | None = None,
                      dtype: str = "auto") -> DeploymentFile:
    """One unit: the served model with the flags the server reports (and the layout and dtype the caller knows:
    the server does not report them)."""
    args = [_arg("--max-model-len", facts.max_model_len, "/v1/models max_model_len")]
    if facts.gpu_memory_utilization is not None:
        args.append(_arg("--gpu-memory-utilization", facts.gpu_memory_utilization,
                         "vllm:cache_config_info gpu_memory_utilization"))
    if facts.block_size:
        args.append(_arg("--block-size", facts.block_size, "vllm:cache_config_info block_size"))
    if facts.cache_dtype not in ("auto", ""):
        args.append(_arg("--kv-cache-dtype", facts.cache_dtype, "vllm:cache_config_info cache_dtype"))
    if facts.kv_cache_memory_bytes:  # the KV cache in bytes: the CPU build's flag, newer GPU builds' label
        args.append(_arg("--kv-cache-memory-bytes", facts.kv_cache_memory_bytes,
                         "vllm:cache_config_info kv_cache_memory_bytes"))
    for name, n in (("--tensor-parallel-size", tp), ("--pipeline-parallel-size", pp), ("--dtype", dtype)):
        if n and n != "auto":
            args.append(_arg(name, n, "given to tpfit check"))
    command = VllmCommand(model=facts.model_root or facts.model_id, model_where=Where(path="/v1/models root"),
                          args=tuple(args), anchor=None)
    try:  # a development build (0.11.1.dev5+gabc1234) as the release it leads to
        image = image_for(build_release(facts.version))
    except ValueError:
        image = None
    unit = Unit(name=f"{facts.model_id} at {facts.url}", runtime=Runtime.SERVER, command=command,
                where=Where(path=facts.url), image=image, handle=facts)
    return DeploymentFile(name=facts.url, format=Format.SERVER, units=(unit,))
