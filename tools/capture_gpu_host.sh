#!/bin/bash
# Captures what tpfit's doctor reads on a GPU host, for tests/data/gpu-hosts/NAME (run from the project root).
# usage: bash tools/capture_gpu_host.sh OUTDIR
set -u
D=${1:?usage: capture_gpu_host.sh OUTDIR}; mkdir -p "$D"
nvidia-smi -q -x >"$D/nvidia-smi-q.xml" 2>&1
nvidia-smi >"$D/nvidia-smi.txt" 2>&1
{ nvidia-smi topo -m; echo ---p2p-r; nvidia-smi topo -p2p r; } >"$D/topo.txt" 2>&1
{ which docker nvidia-ctk; docker info --format '{{json .}}'; } >"$D/docker.txt" 2>&1
python3 -m tpfit doctor --json >"$D/doctor.json" 2>"$D/doctor.stderr"
echo "doctor rc=$?"
