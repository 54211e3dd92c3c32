#!/bin/bash
# The kit's go.sh (../shared/gpu-vllm) with run2.py (extra engine arguments) and two runs at once:
# usage: bash .vllmgpu2/go2.sh RUN...
#   RUN = [gN=]tag:model:tp:pp:gmu:max_model_len:quant:kv_dtype:max_num_seqs:limit_s[:bench|-[:EXTRA]]
#   a gN= prefix starts the run in the background on GPU N alone (CUDA_VISIBLE_DEVICES=N); the word
#   'wait' waits for every background run. EXTRA: see run2.py.
#   env: LOGS=DIR gets logs.tgz of every log after each run (the device returns at most 8 files);
#   SECONDS_LEFT=N skips a run that could not finish within N seconds of the start.
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_USE_FLASHINFER_SAMPLER=0   # FlashInfer is not carried
G=$(cd "$(dirname "$0")" && pwd); OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ ! -f /tmp/site/.installed ]; then
  [ -f /tmp/site/vllm/_C_stable_libtorch.abi3.so ] || { echo "PART A MISSING: the machine was replaced; redo call 1"; exit 3; }
  tar -xJf "$G/vllm_b.tar.xz" -C /tmp/site || exit 4
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$G"/whl/*.whl 2>&1 | grep -v "already exists" | tail -3
  touch /tmp/site/.installed
fi
mkdir -p /tmp/models && tar -xJf "$G/models.tar.xz" -C /tmp/models && cp "$G/run2.py" /tmp/run2.py
export PYTHONPATH=/tmp/site; cd /tmp
END=$(( $(date +%s) + ${SECONDS_LEFT:-100000} ))
PAT='Model loading took|Available KV cache memory|GPU KV cache size|Maximum concurrency|Actual usage is|Graph capturing finished|Error|ENGINE_READY|RESULT|TIMEOUT'
one() {  # tag model tp pp gmu mml q kvd mns lim bench extra
  local tag=$1 lim=${10}
  echo "=== $tag $(date +%T) ${CUDA_VISIBLE_DEVICES:-all}"
  setsid python3 /tmp/run2.py "/tmp/models/$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "$tag" "${11:--}" "${12:-}" >"$OUT/$tag.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 "$lim"); do kill -0 $pid 2>/dev/null || break; sleep 1; done
  if kill -0 $pid 2>/dev/null; then echo "TIMEOUT $tag" | tee -a "$OUT/$tag.log"; kill -TERM -- -$pid; sleep 6; fi
  kill -KILL -- -$pid 2>/dev/null; wait $pid 2>/dev/null
  echo "--- $tag $(date +%T)"; grep -E "$PAT" "$OUT/$tag.log" | cut -c1-300 | sort -u | tail -10
  [ -n "${LOGS:-}" ] && tar -czf "$LOGS/.$tag.tmp" -C "$OUT" . && mv "$LOGS/.$tag.tmp" "$LOGS/logs.tgz"
}
for R in "$@"; do
  if [ "$R" = wait ]; then wait; sleep 2; continue; fi
  dev=""; case $R in g[0-9]=*) dev=${R%%=*}; dev=${dev#g}; R=${R#*=};; esac
  IFS=: read -r -a a <<<"$R"
  if [ $(( $(date +%s) + ${a[9]} )) -gt $END ]; then echo "SKIP ${a[0]} (time)"; continue; fi
  # two runs at once keep their own torch.compile caches
  if [ -n "$dev" ]; then CUDA_VISIBLE_DEVICES=$dev VLLM_CACHE_ROOT=/tmp/vcache$dev one "${a[@]}" & else one "${a[@]}"; sleep 2; fi
done
wait
