"""`tpfit doctor`: this host as vLLM will find it (driver, GPUs, memory, links, docker, /dev/shm)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tpfit.cli.options import GmuOpt


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the host's facts and the findings as JSON.")] = False,
    image: Annotated[Optional[str], typer.Option("--image", help="The vllm/vllm-openai tag you will run "
                                                 "(its CUDA build is checked against the driver).")] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Also run a tiny GPU container (docker run --gpus all).")] = False,
    gpu_memory_utilization: GmuOpt = None,
    plan_gpus: Annotated[Optional[int], typer.Option("--plan-gpus", min=1, help="GPUs the plan will use.")] = None,
    nodes: Annotated[Optional[str], typer.Option("--nodes", help="Multi-node: HEAD_IP,WORKER_IP,... (run on each "
                                                 "node): this node's address, the head's Ray and master ports, "
                                                 "the vLLM version.")] = None,
    ray_port: Annotated[int, typer.Option("--ray-port", min=1, max=65535, help="The Ray head's port.")] = 6379,
    master_port: Annotated[int, typer.Option("--master-port", min=1, max=65535,
                                             help="vLLM's --master-port (--nnodes launcher).")] = 29501,
) -> None:
    """Check this host before launching vLLM: driver, GPUs, memory, links, docker, shared memory."""
    import json

    from tpfit.live.doctor import check_host, exit_code, probe_finding, report_dict
    from tpfit.live.read_host import read_host, run_probe
    from tpfit.vllm_facts import CUDA_PROBE_IMAGE, CURRENT_VLLM_VERSION, default_gpu_memory_utilization

    from tpfit.deployment.containers import image_version

    release = image_version(image) or CURRENT_VLLM_VERSION  # the image's vLLM: its default utilization, every node's
    host = read_host()
    findings = check_host(host, image=image, plan_gpus=plan_gpus, gpu_memory_utilization=gpu_memory_utilization
                          or default_gpu_memory_utilization(release))
    if probe:
        findings.append(probe_finding(*run_probe(image or CUDA_PROBE_IMAGE), image=image or CUDA_PROBE_IMAGE))
    if nodes is not None:
        from tpfit.live import nodes as multi

        listed = multi.parse_nodes(nodes)
        findings += multi.check_nodes(listed, multi.read_nodes(listed, ray_port=ray_port, master_port=master_port),
                                      multi.local_addresses(), local_vllm=multi.local_vllm_version(),
                                      expected_vllm=release)
    if as_json:
        typer.echo(json.dumps(report_dict(host, findings), indent=1))
    else:
        from rich.console import Console

        from tpfit.report.doctor import render_findings

        render_findings(host, findings, Console())
    raise typer.Exit(exit_code(findings))
