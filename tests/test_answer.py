"""The one-line answer agrees with the flags and tables beside it: every figure it quotes is the one they give.

Each test plans bundled models through the real CLI (in-process: `tests/inprocess.py`) and reads `--json`.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.inprocess import tpfit


def plan_json(*args: str) -> dict:
    run = tpfit("plan", *args, "--json")
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)


def flag_value(command: str, flag: str) -> str:
    return command.split(f"{flag} ", 1)[1].split()[0]


@pytest.mark.parametrize("args", [
    # one request asked: the answer said "AWQ 4-bit fits with 1 sequence" beside "--max-num-seqs 2"
    ("llama-3.1-70b", "--gpus", "2x3090", "--context", "4096"),
    # two replicas of 91 sequences each: it said "fits with 1 sequence" beside "--max-num-seqs 91"
    ("llama-3.1-405b", "--gpus", "2x8xH100", "--context", "8192", "--dp", "2"),
])
def test_the_awq_alternative_gives_the_sequences_its_flags_run(args):
    doc = plan_json(*args)
    fallback = doc["plan"]["fallback"]
    memory = fallback["candidates"][fallback["recommended"]]["memory"]
    shown = re.search(r"AWQ 4-bit fits as \S+ PP\d+(?: DP\d+)? with (\S+) sequences", doc["summary"])
    assert shown, doc["summary"]
    assert shown[1] == f"{memory['max_concurrency']:.2f}", (shown[1], doc["summary"])
    seqs = int(flag_value(doc["summary"].split("AWQ 4-bit", 1)[1], "--max-num-seqs"))
    assert seqs == max(1, min(memory["max_num_seqs"], int(memory["max_concurrency"]))), doc["summary"]


def test_the_insufficient_answer_names_the_flag_its_command_gives():
    """The KV cache holds 3.53 of 8 requests with --max-num-seqs 2 given: it said "(--max-num-seqs 3)" beside the
    flags' --max-num-seqs 2."""
    doc = plan_json("llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--concurrency", "8",
                    "--max-num-seqs", "2")
    best = doc["candidates"][doc["plan"]["recommended"]]
    assert best["memory"]["verdict"] == "insufficient_concurrency", doc["summary"]
    flags = {f["flag"]: f["value"] for f in best["flags"]}
    assert f"(--max-num-seqs {flags['--max-num-seqs']})" in doc["summary"], (flags, doc["summary"])


def test_a_batch_below_the_concurrency_is_said_beside_starts():
    """--max-num-seqs 4 on two replicas serves 8 of 64 requests at once: the answer said "fits ... 111.37 sequences"
    and exit 0 without a word, the speed figures queueing the rest. The verdict (the KV cache's) stays `starts`."""
    run = tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--context", "4096", "--concurrency", "64",
                "--max-num-seqs", "4", "--json")
    doc = json.loads(run.stdout)
    best = doc["candidates"][doc["recommended"]]
    assert run.returncode == 0 and best["memory"]["verdict"] == "starts", doc["summary"]
    dp = best["layout"]["dp"]
    assert f"--max-num-seqs 4 runs {4 * dp} of the 64 requests at once" in doc["summary"], doc["summary"]
    assert best["speed"]["running_per_replica"] == 4, best["speed"]  # what the speed figures ran
    reason = next(f["reason"] for f in best["flags"] if f["flag"] == "--max-num-seqs")
    assert reason.startswith("at most 4 requests run at once (as given)"), reason
    # a batch that runs every request says nothing of it
    full = plan_json("llama-3.1-8b", "--gpus", "2xH100", "--context", "4096", "--concurrency", "64")
    assert "at once" not in full["summary"], full["summary"]


def test_a_replicas_figures_are_said_to_be_per_replica():
    """150 requests over four replicas of 53.48 sequences: the answer said "fits ... with 53.48 sequences ... at 150
    concurrent", a figure below the concurrency it claims to hold. The figures (and --max-num-seqs) are one engine's."""
    doc = plan_json("llama-3.1-8b", "--gpus", "4xL40S", "--context", "4096", "--concurrency", "150", "--dp", "4")
    best = doc["candidates"][doc["recommended"]]
    m = best["memory"]
    assert best["layout"]["dp"] == 4 and m["verdict"] == "starts"
    assert (f"with {m['max_concurrency']:.2f} sequences of 4096 tokens per replica "
            f"({m['kv_cache_tokens']:,} KV tokens each)") in doc["summary"], doc["summary"]
    reason = next(f["reason"] for f in best["flags"] if f["flag"] == "--max-num-seqs")
    assert reason.endswith("requests of 4096 tokens per replica"), reason
    short = plan_json("llama-3.1-8b", "--gpus", "4xL40S", "--context", "32768", "--concurrency", "64", "--dp", "4")
    assert "sequences of 32768 tokens per replica, not the 16 of 64 each gets" in short["summary"], short["summary"]
    one = plan_json("llama-3.1-8b", "--gpus", "1xH100", "--context", "4096")  # one engine: nothing to say
    assert "per replica" not in one["summary"] and " each)" not in one["summary"], one["summary"]


def test_the_closest_layout_is_the_one_the_answer_and_the_terminal_name():
    """Nothing fits: the page showed the first accepted layout (TP1 PP1, 131.45 GiB of weights per GPU) beside an
    answer quoting TP2 PP1's 67.92 GiB; the terminal said "Closest layout TP2 PP1". The JSON names that layout."""
    args = ("llama-3.1-70b", "--gpus", "2x3090", "--context", "4096")
    doc = plan_json(*args)
    assert doc["recommended"] is None and doc["closest"] is not None
    near = doc["candidates"][doc["closest"]]
    lay = near["layout"]
    assert f"Closest layout TP{lay['tp']} PP{lay['pp']}" in tpfit("plan", *args).stdout
    assert near["memory"]["reasons"][0] in doc["summary"], (near["memory"]["reasons"], doc["summary"])
    fits = plan_json("llama-3.1-8b", "--gpus", "2xH100", "--context", "4096")
    assert fits["closest"] == fits["recommended"] is not None
    refused = plan_json("llama-3.1-70b", "--gpus", "3xH100", "--tp", "3")  # every layout breaks a rule
    assert refused["closest"] is None


@pytest.mark.parametrize(("args", "vllm_error", "reason"), [
    # 65.74 GiB of weights per 24 GB card: torch fails loading them, before vLLM weighs its budget
    (("llama-3.1-70b", "--gpus", "2x3090", "--context", "4096"), "torch.OutOfMemoryError: CUDA out of memory.",
     "the weights alone need 65.74 GiB per GPU, more than the card's 22.08 GiB beside vLLM's CUDA context and NCCL: "
     "torch runs out of memory loading them"),
    # 14.99 GiB of weights load on a 16 GB card, but with the profile forward's activations and non-torch memory
    # the card's 15.39 GiB (beside the CUDA context) are exceeded: torch fails in the profile run
    (("llama-3.1-8b", "--gpus", "1x16GB", "--context", "4096"), "torch.OutOfMemoryError: CUDA out of memory.",
     "weights + activation + non-torch need 16.27 GiB per GPU, more than the card's 15.39 GiB beside vLLM's CUDA "
     "context and NCCL: torch runs out of memory in the profile run"),
    # the weights load on an 80 GB card, but a 0.15 budget leaves nothing for the KV cache: vLLM's own refusal
    (("llama-3.1-8b", "--gpus", "1xH100", "--context", "4096", "--gpu-memory-utilization", "0.15"),
     "No available memory for the cache blocks.", "weights + activation + non-torch need 17.16 GiB per GPU, the "
     "budget is 11.88 GiB"),
])
def test_weights_the_card_cannot_hold_are_torchs_out_of_memory_not_vllms_budget(args, vllm_error, reason):
    """'vLLM says: No available memory for the cache blocks. Try increasing gpu_memory_utilization' stood beside
    131 GiB of weights on a 24 GB card: vLLM never gets there, and no utilization helps."""
    doc = plan_json(*args)
    memory = doc["candidates"][doc["closest"]]["memory"]
    assert memory["verdict"] == "refused_at_start" and memory["vllm_error"].startswith(vllm_error), memory
    assert memory["reasons"] == [reason] and reason in doc["summary"], (memory["reasons"], doc["summary"])


def test_expert_parallel_over_one_gpu_per_stage_is_said_to_do_nothing():
    """--enable-expert-parallel on one GPU (or PP alone) was recommended with 'whole experts per GPU': vLLM turns it
    on only for TP x DP above 1 (FusedMoEParallelConfig.make), so the flag changes nothing there."""
    for gpus, extra in (("1xH100", ()), ("2xH100", ("--pp", "2"))):
        doc = plan_json("qwen3-30b-a3b", "--gpus", gpus, "--context", "4096", "--enable-expert-parallel", *extra)
        best = doc["candidates"][doc["recommended"]]
        assert best["layout"]["tp"] * best["layout"]["dp"] == 1, best["layout"]
        reason = next(f["reason"] for f in best["flags"] if f["flag"] == "--enable-expert-parallel")
        assert "vLLM ignores it here" in reason, reason
    wide = plan_json("qwen3-30b-a3b", "--gpus", "2xH100", "--context", "4096", "--enable-expert-parallel", "--tp", "2")
    reason = next(f["reason"] for f in wide["candidates"][wide["recommended"]]["flags"]
                  if f["flag"] == "--enable-expert-parallel")
    assert reason == "whole experts per GPU"


def test_a_replicas_shortfall_names_its_share_of_the_requests():
    """64 requests over four replicas that each hold 6.69: the reason said 'holds 6.69 requests ..., not 16' beside
    --concurrency 64, a figure the user never gave. It is an engine's share."""
    doc = plan_json("llama-3.1-8b", "--gpus", "4xL40S", "--context", "32768", "--concurrency", "64", "--dp", "4")
    memory = doc["candidates"][doc["closest"]]["memory"]
    assert memory["verdict"] == "insufficient_concurrency"
    assert f"{memory['max_concurrency']:.2f} requests of 32768 tokens, fewer than the 16 an engine gets" in \
        memory["reasons"][0], memory["reasons"]


def test_a_card_given_by_its_size_is_named_by_it():
    """The answer said 'Llama-3.1-8B-Instruct on 2×GENERIC-24GB', the catalog's id, for --gpus 2x24GB."""
    doc = plan_json("llama-3.1-8b", "--gpus", "2x24GB", "--context", "4096")
    assert doc["summary"].startswith("Llama-3.1-8B-Instruct on 2×24GB: fits as "), doc["summary"]
    assert plan_json("llama-3.1-8b", "--gpus", "2x3090", "--context", "4096")["summary"].startswith(
        "Llama-3.1-8B-Instruct on 2×3090: ")
    # the prefix that marks a card given by its size is no catalog card's (GpuSpec.short_name strips it)
    from tpfit.hardware.catalog import GENERIC_ID_PREFIX, catalog_gpus

    assert not [g.id for g in catalog_gpus() if g.id.startswith(GENERIC_ID_PREFIX)]


def test_a_layout_beyond_the_gpus_given_says_both_ways_out():
    """--pp 2 on one GPU: the fix said 'use at most 1 GPUs in total', neither a flag nor the words for one GPU."""
    doc = plan_json("llama-3.1-8b", "--gpus", "1xH100", "--pp", "2")
    (reason,) = doc["candidates"][0]["reasons"]
    assert reason["fix"] == "use sizes whose TP x PP x DP is at most 1, or --gpus with 2 GPUs", reason
    assert doc["summary"].endswith("TP1 PP2 needs 2 GPUs, 1 given; use sizes whose TP x PP x DP is at most 1, or "
                                   "--gpus with 2 GPUs"), doc["summary"]


def test_the_layouts_table_says_its_figures_are_per_replica_where_a_layout_has_replicas():
    """The table put TP1 PP1 DP4's 53.48 sequences beside TP4's 138 without saying the first is one of four engines."""
    report = " ".join(tpfit("plan", "llama-3.1-8b", "--gpus", "4xL40S", "--context", "4096").stdout.split())
    assert "Layouts that pass vLLM's rules (GiB per GPU; KV tokens and max conc. per replica)" in report, report
    single = " ".join(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--context", "4096").stdout.split())
    assert "Layouts that pass vLLM's rules (GiB per GPU)" in single and "per replica" not in single
