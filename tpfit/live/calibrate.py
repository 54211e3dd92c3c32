"""Measure this host's GPUs for the speed model (`tpfit calibrate`): memory bandwidth, GEMMs, all-reduce, P2P.

Three layers: plain arithmetic that turns timings into figures (`fit_allreduce`, `make_calibration`), a timing loop
with the clock and the device sync injected (`time_op`), and the torch code that runs the kernels (`plan_steps`).
torch is the `calibrate` extra: it is imported only inside the torch layer, so importing this module never needs it.
"""

from __future__ import annotations

import enum
import math
import os
import queue
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tpfit.errors import CalibrationError, UsageError
from tpfit.hardware.calibration import AllReduceFit, GpuCalibration
from tpfit.kinds import CalibrationDevice as Device
from tpfit.kinds import Launch
from tpfit.units import GB, KIB, MIB

INSTALL_LINE = "pip install 'tpfit[calibrate]'"
"""What to run when torch is missing (httpx prints its `pip install 'httpx[cli]'` the same way)."""

ALLREDUCE_TIMEOUT_S = 300.0
"""Longest wait for the all-reduce processes of one world size (NCCL start-up takes ~10-20 s on 8 GPUs)."""
GRAPH_TIMEOUT_S = 90.0
"""Longest wait for the CUDA-graph all-reduce timings once the eager ones are in; past it the eager ones stand."""
GRAPH_LAUNCHES = 16
"""Kernels captured in one CUDA graph: replaying it costs one launch, so small kernels are timed on the GPU alone."""


# ---- what one measurement records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CopySample:
    """One timed copy: device memory (src and dst on one device) or peer-to-peer (GPU 0 to GPU 1)."""

    kind: str
    """"memory" (bytes_moved counts the read and the write) or "p2p" (bytes_moved counts the bytes sent)."""
    bytes_moved: int
    seconds: float

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_moved / self.seconds

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bytes_moved": self.bytes_moved, "seconds": self.seconds,
                "bytes_per_s": self.bytes_per_s}


@dataclass(frozen=True, slots=True, kw_only=True)
class GemmSample:
    """One timed matrix product: (m x k) @ (k x n), m the tokens, k x n a weight of a real model."""

    key: str
    """One of GEMM_KEYS: dtype and shape class ("bf16_decode", "fp8_prefill", ...)."""
    m: int
    n: int
    k: int
    seconds: float
    launch: Launch = Launch.EAGER

    @property
    def flops_per_s(self) -> float:
        # a multiply and an add per (row, column, inner index)
        return 2 * self.m * self.n * self.k / self.seconds

    def to_dict(self) -> dict:
        return {"key": self.key, "m": self.m, "n": self.n, "k": self.k, "seconds": self.seconds,
                "flops_per_s": self.flops_per_s, "launch": self.launch.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class AllReduceSample:
    """One timed all-reduce of `message_bytes` bytes over `world_size` processes, one per device."""

    world_size: int
    message_bytes: int
    seconds: float
    backend: str
    launch: Launch = Launch.EAGER

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "message_bytes": self.message_bytes, "seconds": self.seconds,
                "backend": self.backend, "launch": self.launch.value}


Sample = CopySample | GemmSample | AllReduceSample


# ---- arithmetic: timings -> figures (pure) --------------------------------------------------------


def fit_allreduce(samples: Sequence[AllReduceSample]) -> AllReduceFit:
    """Fit time(n) = latency_s + n / bus_bytes_per_s to one world size's timings.

    Least squares on relative error (weights 1/t^2): the sizes span 4 KiB to 256 MiB, and plain least squares
    would let the largest messages set the line and leave the small-message latency, decode's cost, to chance.
    A negative intercept (noise on a fast link) becomes 0 with the slope refitted through the origin.
    """
    if len({s.message_bytes for s in samples}) < 2:
        raise UsageError("an all-reduce fit needs timings at two message sizes at least")
    if len({(s.world_size, s.backend, s.launch) for s in samples}) != 1:
        raise UsageError("an all-reduce fit takes the timings of one world size, backend and launch")
    w = [1 / s.seconds**2 for s in samples]
    x = [float(s.message_bytes) for s in samples]
    y = [s.seconds for s in samples]
    sw = sum(w)
    x_mean = sum(wi * xi for wi, xi in zip(w, x)) / sw
    y_mean = sum(wi * yi for wi, yi in zip(w, y)) / sw
    sxx = sum(wi * (xi - x_mean) ** 2 for wi, xi in zip(w, x))
    sxy = sum(wi * (xi - x_mean) * (yi - y_mean) for wi, xi, yi in zip(w, x, y))
    slope_s_per_byte = sxy / sxx
    latency_s = y_mean - slope_s_per_byte * x_mean
    if latency_s < 0:
        latency_s = 0.0
        slope_s_per_byte = sum(wi * xi * yi for wi, xi, yi in zip(w, x, y)) / sum(wi * xi * xi for wi, xi in zip(w, x))
    if slope_s_per_byte <= 0:
        # every size took the same time (noise): the largest message's own rate is the honest bound
        largest = max(samples, key=lambda s: s.message_bytes)
        latency_s = min(y)
        slope_s_per_byte = max(largest.seconds - latency_s, largest.seconds * 1e-3) / largest.message_bytes
    return AllReduceFit(world_size=samples[0].world_size, latency_s=latency_s,
                        bus_bytes_per_s=1 / slope_s_per_byte, backend=samples[0].backend)


def prefer_graphs(samples: Sequence[Sample]) -> list[Sample]:
    """The CUDA-graph timings where a kind of measurement has them, else the eager ones (vLLM decodes in graphs)."""
    def group(s: Sample) -> tuple:
        return ("gemm", s.key) if isinstance(s, GemmSample) else ("allreduce", s.world_size)

    graphed = {group(s) for s in samples if not isinstance(s, CopySample) and s.launch is Launch.CUDA_GRAPH}
    return [s for s in samples if isinstance(s, CopySample) or group(s) not in graphed
            or s.launch is Launch.CUDA_GRAPH]


def summarize_gemm(samples: Sequence[GemmSample]) -> dict[str, float]:
    """FLOP/s per GEMM key: the median over the model shapes, at the largest m measured for that key.

    Decode GEMMs at m = 1 are bound by reading the weight, not by the tensor cores; the figure at the largest
    decode batch (256 tokens) is what a busy decode step's matmuls reach. Every sample is kept in the raw output.
    """
    figures: dict[str, float] = {}
    for key in sorted({s.key for s in samples}):
        of_key = [s for s in prefer_graphs(samples) if s.key == key]
        m_max = max(s.m for s in of_key)
        figures[key] = statistics.median(s.flops_per_s for s in of_key if s.m == m_max)
    return figures


def make_calibration(samples: Sequence[Sample], *, gpu_name: str, gpu_id: str | None, num_gpus: int,
                     source: str, step_overhead_s: float | None = None) -> GpuCalibration:
    """The GpuCalibration these samples give: medians of repeated copies, one all-reduce fit per world size."""
    memory = [s.bytes_per_s for s in samples if isinstance(s, CopySample) and s.kind == "memory"]
    if not memory:
        raise CalibrationError("the memory-bandwidth measurement failed, and a calibration needs it; nothing written")
    p2p = [s.bytes_per_s for s in samples if isinstance(s, CopySample) and s.kind == "p2p"]
    reduces = [s for s in prefer_graphs(samples) if isinstance(s, AllReduceSample)]
    fits = tuple(fit_allreduce([s for s in reduces if s.world_size == n])
                 for n in sorted({s.world_size for s in reduces}))
    return GpuCalibration(
        gpu_name=gpu_name, gpu_id=gpu_id, source=source, num_gpus=num_gpus,
        mem_bw_bytes_per_s=statistics.median(memory),
        gemm_flops_per_s=summarize_gemm([s for s in samples if isinstance(s, GemmSample)]),
        allreduce=fits, p2p_bytes_per_s=statistics.median(p2p) if p2p else None, step_overhead_s=step_overhead_s,
    )


# ---- the timing loop (clock and device sync injected) --------------------------------------------


def time_op(op: Callable[[], object], *, sync: Callable[[], None], now: Callable[[], float] = time.perf_counter,
            target_s: float = 0.05, repeats: int = 3, max_iters: int = 10_000, iters: int | None = None) -> float:
    """Seconds per call of `op`: the median of `repeats` timed batches, each sized to last about `target_s`.

    One untimed call warms up (kernel selection, allocation); one timed call sizes the batches, so a 10 us
    kernel runs thousands of times and a 10 ms one a few; `iters` fixes the batch instead (all-reduce ranks must
    agree on it). `sync` waits for the device to finish queued work.
    """
    op()
    sync()
    if iters is None:
        start = now()
        op()
        sync()
        iters = batch_iters(now() - start, target_s=target_s, max_iters=max_iters)
    timings = []
    for _ in range(repeats):
        start = now()
        for _ in range(iters):
            op()
        sync()
        timings.append((now() - start) / iters)
    return statistics.median(timings)


def batch_iters(single_s: float, *, target_s: float, max_iters: int) -> int:
    """Calls per timed batch: enough for `target_s` at `single_s` a call, 1 .. max_iters."""
    return max(1, min(max_iters, math.ceil(target_s / max(single_s, 1e-9))))


# ---- sizes --------------------------------------------------------------------------------------

# Weights of real models (n = output features, k = input features), per layer, before tensor parallelism:
# Llama-3.1-8B (hidden 4096, 32 q + 8 kv heads of 128, intermediate 14336) and Llama-3.1-70B (8192, 64 + 8, 28672).
LLAMA_8B_SHAPES = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))
"""qkv_proj (4096 + 2 x 1024), o_proj, gate_up_proj (2 x 14336), down_proj of Llama-3.1-8B, as (n, k)."""
LLAMA_70B_SHAPES = ((10240, 8192), (57344, 8192), (8192, 28672))
"""qkv_proj (8192 + 2 x 1024), gate_up_proj (2 x 28672), down_proj of Llama-3.1-70B, as (n, k)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationSizes:
    """How much to measure: copy size, GEMM shapes, all-reduce message sizes, time per timed batch."""

    copy_bytes: int
    gemm_shapes: tuple[tuple[int, int], ...]
    """(n, k) weight shapes."""
    decode_tokens: tuple[int, ...]
    """m of the decode-shaped GEMMs (running requests in one step)."""
    prefill_tokens: tuple[int, ...]
    """m of the prefill-shaped GEMMs (prompt tokens in one step, vLLM's max_num_batched_tokens range)."""
    allreduce_bytes: tuple[int, ...]
    target_s: float
    """Wall time of one timed batch; three batches per figure."""
    cache_flush_bytes: int = 0
    """Rotate through weight copies totalling this much, so decode GEMMs read HBM rather than the L2 cache
    (a decode step reads each weight once; H100/H200 have 50-60 MB of L2)."""


FULL_SIZES = CalibrationSizes(
    copy_bytes=1 << 30, gemm_shapes=LLAMA_8B_SHAPES + LLAMA_70B_SHAPES, decode_tokens=(1, 16, 64, 256),
    prefill_tokens=(2048, 8192), allreduce_bytes=tuple(4 * KIB * 4**i for i in range(9)),  # 4 KiB .. 256 MiB
    target_s=0.05, cache_flush_bytes=512 * MIB,
)
"""`tpfit calibrate`: about a minute of GPU time plus NCCL start-up per world size."""
QUICK_SIZES = CalibrationSizes(
    copy_bytes=256 * MIB, gemm_shapes=LLAMA_8B_SHAPES[:3], decode_tokens=(1, 256), prefill_tokens=(4096,),
    allreduce_bytes=(8 * KIB, 128 * KIB, 2 * MIB, 32 * MIB), target_s=0.02, cache_flush_bytes=256 * MIB,
)
"""`tpfit calibrate --quick`: a few seconds per part."""
TINY_SIZES = CalibrationSizes(
    copy_bytes=4 * MIB, gemm_shapes=((512, 256), (256, 512)), decode_tokens=(1, 8), prefill_tokens=(128,),
    allreduce_bytes=(4 * KIB, 64 * KIB, 1 * MIB), target_s=0.005,
)
"""`tpfit calibrate --device cpu --quick`: tiny sizes, so the whole run takes seconds on a CPU (CI)."""


# ---- the torch layer ---------------------------------------------------------------------------


def import_torch():
    """torch, or a UsageError that says how to install it (exit 2)."""
    try:
        with warnings.catch_warnings():  # torch CPU wheels warn when numpy is absent; calibrate never uses numpy
            warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
            import torch
    except ImportError as err:
        raise UsageError(f"tpfit calibrate needs torch: {INSTALL_LINE}") from err
    return torch


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """What the measured host is: device kind, GPU name and count, torch version."""

    device: Device
    gpu_name: str
    num_gpus: int
    torch_version: str
    fp8: bool
    """torch._scaled_mm runs here (on GPUs of compute capability 8.9 or newer: Ada, Hopper, Blackwell)."""
    peer_access: bool


def read_host_facts(device: Device = Device.AUTO) -> HostFacts:
    """The device to measure and its facts, from torch."""
    torch = import_torch()
    if device is Device.AUTO:
        device = Device.CUDA if torch.cuda.is_available() else Device.CPU
    if device is Device.CUDA:
        if not torch.cuda.is_available():
            raise UsageError("torch sees no CUDA GPU; use --device cpu, or install a CUDA build of torch",
                             flag="--device", value="cuda")
        count = torch.cuda.device_count()
        # FP8 tensor cores: compute capability 8.9 (Ada) and newer
        fp8 = torch.cuda.get_device_capability(0) >= (8, 9) and _fp8_runs(torch, "cuda:0")
        return HostFacts(device=device, gpu_name=torch.cuda.get_device_name(0), num_gpus=count,
                         torch_version=torch.__version__, fp8=fp8,
                         peer_access=count > 1 and torch.cuda.can_device_access_peer(0, 1))
    return HostFacts(device=Device.CPU, gpu_name="CPU", num_gpus=1, torch_version=torch.__version__,
                     fp8=_fp8_runs(torch, "cpu"), peer_access=False)


def _fp8_runs(torch, dev: str) -> bool:
    """torch._scaled_mm multiplies two FP8 (e4m3) matrices here (recent torch does on CPU too)."""
    try:
        a = torch.ones(16, 16, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev, dtype=torch.float32)
        return bool(torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)[0, 0] == 16)
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One named part of a calibration run; `run()` measures and returns its samples."""

    name: str
    run: Callable[[], list[Sample]] = field(repr=False)


def _sync_for(torch, device: Device, index: int = 0) -> Callable[[], None]:
    if device is Device.CUDA:
        return lambda: torch.cuda.synchronize(index)
    return lambda: None


def measure_copy(torch, device: Device, n_bytes: int, sizes: CalibrationSizes, *,
                 now: Callable[[], float] = time.perf_counter) -> list[Sample]:
    """Device-memory bandwidth: dst.copy_(src) of n_bytes reads n and writes n bytes."""
    dev = "cuda:0" if device is Device.CUDA else "cpu"
    src = torch.empty(n_bytes, dtype=torch.uint8, device=dev).random_(0, 255)
    dst = torch.empty_like(src)
    seconds = time_op(lambda: dst.copy_(src), sync=_sync_for(torch, device), now=now, target_s=sizes.target_s)
    return [CopySample(kind="memory", bytes_moved=2 * n_bytes, seconds=seconds)]


def measure_p2p(torch, n_bytes: int, sizes: CalibrationSizes, *,
                now: Callable[[], float] = time.perf_counter) -> list[Sample]:
    """GPU 0 -> GPU 1 copy bandwidth (bytes sent per second)."""
    src = torch.empty(n_bytes, dtype=torch.uint8, device="cuda:0").random_(0, 255)
    dst = torch.empty(n_bytes, dtype=torch.uint8, device="cuda:1")

    def sync() -> None:
        torch.cuda.synchronize(0)
        torch.cuda.synchronize(1)

    seconds = time_op(lambda: dst.copy_(src, non_blocking=True), sync=sync, now=now, target_s=sizes.target_s)
    return [CopySample(kind="p2p", bytes_moved=n_bytes, seconds=seconds)]


def measure_gemm(torch, device: Device, key: str, n: int, k: int, tokens: Sequence[int], sizes: CalibrationSizes, *,
                 now: Callable[[], float] = time.perf_counter) -> list[Sample]:
    """Matmuls of `tokens` x k activations by one k x n weight, bf16 or fp8 (torch._scaled_mm, per-tensor scales)."""
    dev = "cuda:0" if device is Device.CUDA else "cpu"
    fp8 = key.startswith("fp8")
    weight_bytes = n * k * (1 if fp8 else 2)
    copies = max(1, math.ceil(sizes.cache_flush_bytes / weight_bytes))
    # weights stored (n, k) row-major and used transposed, as vLLM's linear layers hold them
    weights = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
    if fp8:
        weights = [w.to(torch.float8_e4m3fn) for w in weights]
        one = torch.ones((), device=dev, dtype=torch.float32)
    samples: list[Sample] = []
    for m in tokens:
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        if fp8:
            x = x.to(torch.float8_e4m3fn)

        def product(i: int) -> None:
            w = weights[i % copies]
            if fp8:
                torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            else:
                torch.nn.functional.linear(x, w)  # x @ w.t(): what vLLM's unquantized linear layers call

        turn = [0]

        def eager() -> None:
            product(turn[0])
            turn[0] += 1

        op, per_op, launch = eager, 1, Launch.EAGER
        # decode kernels last ~10-50 us, about what a Python launch costs: time them from a graph, as vLLM runs them
        if device is Device.CUDA and key.endswith("_decode"):
            launches = max(copies, GRAPH_LAUNCHES)
            graph = _capture(torch, lambda: [product(i) for i in range(launches)])
            if graph is not None:
                op, per_op, launch = graph.replay, launches, Launch.CUDA_GRAPH
        seconds = time_op(op, sync=_sync_for(torch, device), now=now, target_s=sizes.target_s) / per_op
        samples.append(GemmSample(key=key, m=m, n=n, k=k, seconds=seconds, launch=launch))
        op = None  # frees the graph's memory pool before the next shape
    del weights
    return samples


def _capture(torch, work: Callable[[], object]):
    """A CUDA graph of `work` (run once eagerly first, on a side stream, as torch.cuda.graphs asks), or None."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            work()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            work()
        return graph
    except RuntimeError:
        return None


def _allreduce_worker(rank: int, world_size: int, port: int, device: str, message_bytes: tuple[int, ...],
                      target_s: float, results) -> None:
    """One rank of a timed all-reduce group (a spawned process: module-level, so it pickles).

    Sends the eager timings first, then on GPUs the CUDA-graph ones (vLLM captures its decode all-reduces), so a
    graph capture that fails or hangs leaves the eager figures standing.
    """
    phase = "eager"
    try:
        torch = import_torch()
        import torch.distributed as dist

        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
        dev = f"cuda:{rank}" if device == "cuda" else "cpu"
        # bf16 as vLLM's TP all-reduces; gloo on CPU reduces float32 (its bf16 support varies by build)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        itemsize = torch.empty((), dtype=dtype).element_size()

        def sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize(rank)

        def timed(op: Callable[[], object], per_op: int) -> float:
            # ranks must run the same number of all-reduces: size the batch on each, agree on the largest
            dist.barrier()
            single_s = time_op(op, sync=sync, repeats=1, iters=1)
            iters = torch.tensor([batch_iters(single_s, target_s=target_s, max_iters=2000)], device=dev)
            dist.all_reduce(iters, op=dist.ReduceOp.MAX)
            seconds = time_op(op, sync=sync, iters=int(iters.item())) / per_op
            # every rank's median; the group's time is the slowest rank's
            got = torch.tensor([seconds], dtype=torch.float64, device=dev)
            dist.all_reduce(got, op=dist.ReduceOp.MAX)
            return float(got.item())

        tensors = [torch.ones(max(1, n // itemsize), dtype=dtype, device=dev) for n in message_bytes]
        eager = [(t.numel() * itemsize, timed(lambda t=t: dist.all_reduce(t), 1)) for t in tensors]
        if rank == 0:
            results.put(("eager", backend, eager))
        if device == "cuda":
            phase = "graph"
            graphed = []
            for t in tensors:
                graph = torch.cuda.CUDAGraph()
                dist.barrier()
                with torch.cuda.graph(graph):
                    for _ in range(GRAPH_LAUNCHES):
                        dist.all_reduce(t)
                graphed.append((t.numel() * itemsize, timed(graph.replay, GRAPH_LAUNCHES)))
                del graph
            if rank == 0:
                results.put(("graph", backend, graphed))
        dist.barrier()
        dist.destroy_process_group()
    except Exception as err:  # reported to the parent, which raises CalibrationError naming the rank
        results.put(("error" if phase == "eager" else "graph_error", rank, f"{type(err).__name__}: {err}"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_allreduce(device: Device, world_size: int, sizes: CalibrationSizes, *,
                      timeout_s: float = ALLREDUCE_TIMEOUT_S) -> list[Sample]:
    """All-reduce timings over `world_size` processes, one per GPU (NCCL) or CPU process (gloo)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_allreduce_worker, daemon=True,
                         args=(rank, world_size, port, device.value, sizes.allreduce_bytes, sizes.target_s, results))
             for rank in range(world_size)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    got: dict[str, tuple] = {}
    try:
        # rank 0 sends "eager" then (GPUs) "graph"; any rank may send "error" (eager phase) or "graph_error"
        while "eager" not in got:
            status, *rest = _next_result(results, procs, deadline, world_size)
            if status == "error":
                rank, message = rest
                raise CalibrationError(f"all-reduce over {world_size} processes failed on rank {rank}: {message}")
            got[status] = tuple(rest)
        graph_deadline = time.monotonic() + GRAPH_TIMEOUT_S
        while device is Device.CUDA and not {"graph", "graph_error"} & got.keys():
            try:
                status, *rest = _next_result(results, procs, graph_deadline, world_size)
            except CalibrationError:
                warnings.warn(f"all-reduce x{world_size}: no CUDA-graph timings within {GRAPH_TIMEOUT_S:.0f} s; "
                              f"the eager timings stand", stacklevel=1)
                break
            got[status] = tuple(rest)
        if "graph_error" in got:
            warnings.warn(f"all-reduce x{world_size}: CUDA-graph capture failed on rank {got['graph_error'][0]}: "
                          f"{got['graph_error'][1]}; the eager timings stand", stacklevel=1)
        samples: list[Sample] = []
        for status, launch in (("eager", Launch.EAGER), ("graph", Launch.CUDA_GRAPH)):
            if status in got:
                backend, out = got[status]
                samples += [AllReduceSample(world_size=world_size, message_bytes=n, seconds=t, backend=backend,
                                            launch=launch) for n, t in out]
        return samples
    finally:
        for p in procs:
            p.join(timeout=10 if p.is_alive() else 0)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


def _next_result(results, procs, deadline: float, world_size: int) -> tuple:
    """The next message from the all-reduce workers, or CalibrationError when one died or time ran out."""
    while True:
        try:
            return results.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() > deadline:
                raise CalibrationError(f"all-reduce over {world_size} processes did not finish in time") from None
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise CalibrationError(f"an all-reduce process over {world_size} ranks exited with code "
                                       f"{dead[0].exitcode}") from None


def default_world_sizes(facts: HostFacts, *, quick: bool) -> tuple[int, ...]:
    """Every TP size this host can form (2 .. GPUs; powers of two with --quick); two gloo processes on CPU."""
    if facts.device is Device.CPU:
        return (2,)
    sizes = tuple(range(2, facts.num_gpus + 1))
    return tuple(n for n in sizes if n & (n - 1) == 0) if quick else sizes


def plan_steps(facts: HostFacts, sizes: CalibrationSizes, world_sizes: Sequence[int], *,
               now: Callable[[], float] = time.perf_counter) -> list[Step]:
    """The measurements to make, in order, each a named Step (the CLI draws a progress bar over them)."""
    torch = import_torch()
    dev = facts.device
    if dev is Device.CPU:
        # one thread: on a busy machine OpenMP's waiting threads time the scheduler (~20 ms a call), not the kernel
        torch.set_num_threads(1)
    steps = [Step(name="memory bandwidth", run=lambda: measure_copy(torch, dev, sizes.copy_bytes, sizes, now=now))]
    keys = ["bf16"] + (["fp8"] if facts.fp8 else [])
    for dtype in keys:
        for n, k in sizes.gemm_shapes:
            # _scaled_mm needs every dimension divisible by 16: decode batches are padded, as vLLM pads them
            decode = sorted({max(16, m) for m in sizes.decode_tokens}) if dtype == "fp8" else sizes.decode_tokens
            steps.append(Step(name=f"{dtype} GEMM {n}x{k}", run=lambda d=dtype, n=n, k=k, tok=tuple(decode): (
                measure_gemm(torch, dev, f"{d}_decode", n, k, tok, sizes, now=now)
                + measure_gemm(torch, dev, f"{d}_prefill", n, k, sizes.prefill_tokens, sizes, now=now))))
    if facts.peer_access:
        steps.append(Step(name="P2P copy GPU0->GPU1", run=lambda: measure_p2p(torch, sizes.copy_bytes, sizes, now=now)))
    for n in world_sizes:
        backend = "NCCL" if dev is Device.CUDA else "gloo"
        steps.append(Step(name=f"all-reduce x{n} ({backend})", run=lambda n=n: measure_allreduce(dev, n, sizes)))
    return steps


def check_world_sizes(facts: HostFacts, world_sizes: Sequence[int]) -> None:
    """Each requested size is one this host can form: 2 .. its GPU count (NCCL, one process per GPU), 2 .. its CPUs
    (gloo; at least 2)."""
    most = facts.num_gpus if facts.device is Device.CUDA else max(2, os.cpu_count() or 2)
    for n in world_sizes:
        if most < 2:  # one GPU: 2 was let through (a NCCL pair on one GPU) and failed after the minute of measuring
            raise UsageError(f"an all-reduce needs 2 GPUs or more, this host has {facts.num_gpus} "
                             f"({facts.gpu_name}); leave --world-size out", flag="--world-size", value=n)
        if not 2 <= n <= most:
            raise UsageError(f"an all-reduce needs 2 to {most} processes on this host", flag="--world-size", value=n)


def sizes_for(facts: HostFacts, *, quick: bool) -> CalibrationSizes:
    """FULL on GPUs (QUICK with --quick); on the CPU, QUICK (TINY with --quick: seconds, for CI)."""
    if facts.device is Device.CPU:
        return TINY_SIZES if quick else QUICK_SIZES
    return QUICK_SIZES if quick else FULL_SIZES


def calibration_filename(gpu_name: str, gpu_id: str | None) -> str:
    """`h200.json` for a catalog GPU, else the name made safe for a file (`nvidia-rtx-pro-6000.json`, `cpu.json`)."""
    slug = "".join(c if c.isalnum() else "-" for c in gpu_name.lower()).strip("-") or "gpu"
    return f"{gpu_id or slug}.json"


def describe_source(facts: HostFacts, today: str) -> str:
    """The calibration's one-line source: "tpfit calibrate on 2x NVIDIA H200, torch 2.11.0, 2026-11-30"."""
    return f"tpfit calibrate on {facts.num_gpus}x {facts.gpu_name}, torch {facts.torch_version}, {today}"


def sample_from_dict(data: dict) -> Sample:
    """One raw timing of a calibration file's `samples` (what `to_dict` wrote), for re-fitting and tests."""
    launch = Launch(data.get("launch", Launch.EAGER.value))
    if "key" in data:
        return GemmSample(key=data["key"], m=data["m"], n=data["n"], k=data["k"], seconds=data["seconds"], launch=launch)
    if "world_size" in data:
        return AllReduceSample(world_size=data["world_size"], message_bytes=data["message_bytes"],
                               seconds=data["seconds"], backend=data["backend"], launch=launch)
    return CopySample(kind=data["kind"], bytes_moved=data["bytes_moved"], seconds=data["seconds"])


def calibration_document(calibration: GpuCalibration, samples: Sequence[Sample], vllm_run: dict | None = None) -> dict:
    """The file `tpfit calibrate` writes: the calibration, plus every raw timing it was fitted from (and the vLLM
    run its step overhead was fitted from, where there was one)."""
    return {**calibration.to_dict(), "samples": [s.to_dict() for s in samples],
            **({"vllm_run": vllm_run} if vllm_run else {})}


def release_device_memory(device: Device) -> None:
    """Hand the GPU memory torch cached while measuring back to the driver, before vLLM sizes its own."""
    if device is Device.CUDA:
        import_torch().cuda.empty_cache()


def catalog_id(gpu_name: str) -> str | None:
    """The catalog id of the GPU torch names ("NVIDIA H200" -> "h200"), None for an unknown GPU or the CPU."""
    from tpfit.hardware.catalog import find_gpu_by_nvml_name

    spec = find_gpu_by_nvml_name(gpu_name)
    return spec.id if spec else None


def describe_samples(samples: Sequence[Sample]) -> str:
    """One log line of what a step measured: "8.6 GB in 2.0 ms: 4,300 GB/s", "m=256: 610 TFLOP/s", "4 MiB 45 us"."""
    parts = []
    for s in samples:
        if isinstance(s, CopySample):
            parts.append(f"{s.bytes_moved / GB:.2f} GB in {s.seconds * 1e3:.3f} ms: {s.bytes_per_s / GB:,.0f} GB/s")
        elif isinstance(s, GemmSample):
            parts.append(f"{s.key} m={s.m}: {s.flops_per_s / 1e12:,.4g} TFLOP/s ({s.launch.value})")
        else:
            parts.append(f"{s.message_bytes / KIB:,.0f} KiB {s.seconds * 1e6:,.1f} us ({s.launch.value})")
    return "; ".join(parts)
