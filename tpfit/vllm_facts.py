"""Facts about vLLM releases and their images that several parts of tpfit use, each in one place:
the releases up to the newest tpfit reads, the default `--gpu-memory-utilization` per release, the image's CUDA
builds and the host driver each needs, the official image and its tags, the server's port, health path and the
/dev/shm it needs."""

from __future__ import annotations

import re

from msgspec import Struct

from tpfit.kinds import Kind
from tpfit.units import GIB

CURRENT_VLLM_VERSION = "0.33.0"
"""Newest vLLM release read for tpfit's rules (shared/reference/vllm-internals.md): the default target."""

GPU_MEMORY_UTILIZATION_DEFAULT = 0.92
"""`CacheConfig.gpu_memory_utilization` default from vLLM 0.20 (0.19.0 / 0.20.0 wheels' config/cache.py)."""
GPU_MEMORY_UTILIZATION_DEFAULT_BEFORE_0_20 = 0.9
"""The same default before 0.20."""


RELEASES = (
    "0.6.0", "0.6.1", "0.6.2", "0.6.3", "0.6.4", "0.6.5", "0.6.6", "0.7.0", "0.7.1", "0.7.2", "0.7.3", "0.8.0", "0.8.1",
    "0.8.2", "0.8.3", "0.8.4", "0.8.5", "0.9.0", "0.9.1", "0.9.2", "0.10.0", "0.10.1", "0.10.2", "0.11.0", "0.11.1",
    "0.11.2", "0.12.0", "0.13.0", "0.14.0", "0.14.1", "0.15.0", "0.15.1", "0.16.0", "0.17.0", "0.17.1", "0.18.0",
    "0.18.1", "0.19.0", "0.19.1", "0.20.0", "0.20.1", "0.20.2", "0.21.0", "0.22.0", "0.22.1", "0.23.0", "0.24.0",
    "0.25.0", "0.25.1", "0.26.0", "0.27.0", "0.27.1", "0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0", "0.33.0",
)
"""vLLM's X.Y.Z releases from 0.6.0 to the current one, as the package index lists vllm's versions: a
`--vllm-version` of an older minor names one of these (0.7.4, 0.10.3 name none: far more often a typo than a release
tpfit has not heard of); the current minor's later patches are taken as released after this list."""

RELEASES_BEYOND_PATCH = ("0.6.1.post1", "0.6.1.post2", "0.6.3.post1", "0.6.4.post1", "0.6.6.post1", "0.8.5.post1",
                         "0.9.0.1", "0.10.1.1")
"""vLLM's releases from 0.6.0 to 0.33.0 spelled beyond X.Y.Z: post releases (PEP 440 `.postN`, a rebuilt wheel) and
hotfixes with a fourth part, as the package index lists vllm's versions; each has its `vllm/vllm-openai:v...` tag of
the same spelling. They change no rule tpfit models, so each plans as its X.Y.Z. A fourth part or `.postN` outside
this list (`0.26.0.1`) is refused: it names no release, and is far more often a typo than a hotfix tpfit has not
heard of."""

_RELEASE = r"[vV]?(?P<nums>\d{1,4}(?:\.\d{1,4}){1,3})(?:[._-]?post(?P<post>\d{1,4}))?(?:\+[0-9A-Za-z._-]+)?"
_PRE_RELEASE = (r"(?i)[vV]?(?P<nums>\d{1,4}(?:\.\d{1,4}){1,3})(?:[._-]?post\d+)?[._-]?(?:a|b|c|rc|alpha|beta|pre|"
                r"preview|dev)\d*"
                r"(?:\.dev\d*)?(?:\+[0-9A-Za-z._-]+)?")
"""Patterns compiled on first use (re's cache): a plan of a plain X.Y.Z, the default, needs neither, and the two cost
~0.8 ms to compile, 1.5 % of `tpfit plan`'s cold start."""


class VllmRelease(Struct, frozen=True, kw_only=True):
    """A vLLM release as its user named it (`name`, the spelling of its package version and image tag) and the X.Y.Z
    whose semantics it plans with (`base`): "v0.8.5.post1" -> name "0.8.5.post1", base (0, 8, 5)."""

    name: str
    base: tuple[int, int, int]


def read_release(text: str) -> VllmRelease:
    """The release `text` names, or ValueError saying what would work (its message names no flag: callers add it).

    Valid: "0.26.0", "0.26" and "v0.26.0" (-> "0.26.0"), "0.26.0+cpu" (a local build of 0.26.0), "0.8.5.post1",
    "v0.8.5.post1", "0.8.5post1" and "0.8.5-post1" (-> "0.8.5.post1", PEP 440's spellings), "0.10.1.1" (a hotfix).
    Not valid: "", "abc", "0.26.0.1" and "0.26.0.post1" (no such release: RELEASES_BEYOND_PATCH), "0.26.0.1.2",
    "0.26.0rc1" and "0.11.1.dev5" (pre-releases: plan for the release).
    """
    raw = text.strip()
    parts = raw.split(".")
    if 2 <= len(parts) <= 3 and all(p.isdigit() and p.isascii() and len(p) <= 4 for p in parts):  # X.Y or X.Y.Z
        base = tuple(int(p) for p in parts) + (0,) * (3 - len(parts))
        return VllmRelease(name=".".join(map(str, base)), base=base)  # type: ignore[arg-type]
    m = re.fullmatch(_RELEASE, raw)
    if m is None:
        pre = re.fullmatch(_PRE_RELEASE, raw)
        if pre is not None:
            raise ValueError(f"{raw} is a pre-release or development build of vLLM; plan for the release it leads to "
                             f"or follows, such as {pre.group('nums')}")
        raise ValueError(f"not a vLLM release: {text!r}; use one such as {CURRENT_VLLM_VERSION} (or 0.8.5.post1, "
                         "0.10.1.1 as published)")
    nums = [int(p) for p in m.group("nums").split(".")]
    base = tuple(nums[:3] + [0] * (3 - len(nums[:3])))
    name = ".".join(map(str, nums if len(nums) > 3 else base)) + (f".post{int(m['post'])}" if m["post"] else "")
    if (len(nums) > 3 or m["post"]) and name not in RELEASES_BEYOND_PATCH:
        plain = ".".join(map(str, base))
        raise ValueError(f"vLLM has no release {name} (those beyond X.Y.Z are {', '.join(RELEASES_BEYOND_PATCH)}); "
                         f"use {plain}")
    return VllmRelease(name=name, base=base)  # type: ignore[arg-type]


def build_release(text: str) -> str:
    """The release a vLLM build reports itself as (`/version`, `vllm --version`): a release as `read_release` names
    it ("0.26.0+cpu" -> "0.26.0"); a development or pre-release build, which source installs and nightly images
    report, as the X.Y.Z it leads to ("0.11.1.dev5+gabc1234", "0.11.1rc2", "0.11.1.post1.dev3" -> "0.11.1"), and a
    hotfix newer than RELEASES_BEYOND_PATCH as its X.Y.Z. ValueError when `text` spells no version."""
    try:
        return read_release(text).name
    except ValueError:
        # read_release's own patterns: a development or pre-release build, or a hotfix newer than its list
        found = re.fullmatch(_PRE_RELEASE, text.strip()) or re.fullmatch(_RELEASE, text.strip())
        if found is None:
            raise
        return read_release(".".join(found["nums"].split(".")[:3])).name


def unpublished(release: VllmRelease) -> tuple[str, ...] | None:
    """The releases of `release`'s minor when its X.Y.Z is none of them (0.26.1 -> ("0.26.0",)); None when it is
    one, or lies outside RELEASES (before 0.6.0; the current minor's later patches and later minors)."""
    base = ".".join(map(str, release.base))
    if base in RELEASES or release.base < parse_version(RELEASES[0]) \
            or release.base[:2] >= parse_version(CURRENT_VLLM_VERSION)[:2]:
        return None
    minor = ".".join(map(str, release.base[:2]))
    return tuple(r for r in RELEASES if r.rsplit(".", 1)[0] == minor)


def unpublished_text(release: VllmRelease, same: tuple[str, ...]) -> str:
    """`vLLM has no release 0.26.1 (0.26's are 0.26.0)`, for `unpublished`'s answer."""
    return f"vLLM has no release {release.name} ({'.'.join(map(str, release.base[:2]))}'s are {', '.join(same)})"


def parse_version(text: str) -> tuple[int, int, int]:
    """The X.Y.Z whose semantics `text`'s release has: `"0.26.0" -> (0, 26, 0)`, `"0.8.5.post1" -> (0, 8, 5)`,
    `"0.10.1.1" -> (0, 10, 1)`; ValueError for what `read_release` refuses."""
    return read_release(text).base


def default_gpu_memory_utilization(version: str) -> float:
    """vLLM's `--gpu-memory-utilization` when the flag is not given, for that release."""
    return GPU_MEMORY_UTILIZATION_DEFAULT if parse_version(version) >= (0, 20, 0) \
        else GPU_MEMORY_UTILIZATION_DEFAULT_BEFORE_0_20


class CudaBuild(Kind):
    """The CUDA builds of the official `vllm/vllm-openai` image: the plain tag, and `-cu130`."""

    CU129 = "12.9"
    CU130 = "13.0"

    @property
    def min_driver(self) -> tuple[int, int, int]:
        """Minimum Linux driver (CUDA toolkit release notes, shared/reference/deploy-conventions.md §1.2)."""
        return _MIN_DRIVER[self]

    @property
    def min_driver_text(self) -> str:
        """The minimum driver as NVIDIA writes it: "575.51.03"."""
        major, minor, patch = self.min_driver
        return f"{major}.{minor:02d}.{patch:02d}"

    @property
    def tag_suffix(self) -> str:
        return "-cu130" if self is CudaBuild.CU130 else ""


_MIN_DRIVER = {CudaBuild.CU129: (575, 51, 3), CudaBuild.CU130: (580, 65, 6)}
DEFAULT_CUDA = CudaBuild.CU129
"""The CUDA of the plain `vllm/vllm-openai:vX.Y.Z` tag."""
CUDA_PROBE_IMAGE = f"nvidia/cuda:{DEFAULT_CUDA}.0-base-ubuntu24.04"
"""A tiny image that proves a container sees the GPUs (`tpfit doctor --probe`)."""


MAX_MODEL_LEN_AUTO_FROM = (0, 12, 0)
"""The first release whose `--max-model-len` takes `auto` (or -1): the model's own maximum, shortened to what the
KV cache holds at start (vllm-project/vllm#29431, merged 2025-11-25 after 0.11.2; `human_readable_int_or_auto` in
0.19's and 0.33's arg_utils.py, `_auto_fit_max_model_len` in kv_cache_planning.py)."""
MIN_SHM_BYTES = GIB
"""The /dev/shm (1 GiB) a multi-GPU vLLM needs at least: its workers exchange tensors through it, and a container's
default 64 MB ends in 'Bus error' (vLLM PR #1125, issue #1710). doctor warns below it, check reports a container
below it, deploy refuses a smaller --shm-size."""
OFFICIAL_IMAGE = "vllm/vllm-openai"
"""vLLM's own image repository (Docker Hub): one tag per release, `vX.Y.Z` and `vX.Y.Z-cu130`."""
DEFAULT_PORT = 8000
"""The port `vllm serve` listens on without `--port` (`FrontendArgs.port`: vllm/entrypoints/common/cli_args.py in 0.33,
vllm/entrypoints/openai/cli_args.py before)."""
HEALTH_PATH = "/health"
"""vLLM's health endpoint: 200 once the engine is up, what probes, health checks and `tpfit verify` ask."""


def is_official_image(image: str | None) -> bool:
    """Whether an image reference is vLLM's own repository, whatever its tag or digest: `vllm/vllm-openai:v0.33.0`,
    `docker.io/vllm/vllm-openai@sha256:...`; not `myorg/vllm-openai:v0.33.0` nor `vllm/vllm-openai-rocm`."""
    name = (image or "").split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:  # the tag (a registry's port is before a slash)
        name = name.rsplit(":", 1)[0]
    return name.removeprefix("index.docker.io/").removeprefix("docker.io/") == OFFICIAL_IMAGE


def image_for(vllm_version: str, cuda: CudaBuild = DEFAULT_CUDA) -> str:
    """The pinned official image: `vllm/vllm-openai:vX.Y.Z`, `-cu130` for the CUDA 13.0 build."""
    return f"{OFFICIAL_IMAGE}:v{vllm_version}{CudaBuild(cuda).tag_suffix}"


def cuda_of_image(image: str | None) -> CudaBuild:
    """The CUDA build of a vllm/vllm-openai tag: `-cu130` -> 13.0, otherwise the default."""
    return CudaBuild.CU130 if image and CudaBuild.CU130.tag_suffix.lstrip("-") in image else DEFAULT_CUDA


def parse_driver(version: str | None) -> tuple[int, ...]:
    """`"580.65.06" -> (580, 65, 6)`; `()` when absent or not a driver version."""
    try:
        return tuple(int(p) for p in (version or "").split("."))
    except ValueError:
        return ()


def cuda_for_driver(driver: str | None) -> CudaBuild:
    """The newest image CUDA this host driver runs (the default when the driver is unknown)."""
    have = parse_driver(driver)
    runs = [c for c in CudaBuild if have and have >= c.min_driver]
    return max(runs, key=lambda c: c.min_driver) if runs else DEFAULT_CUDA


def driver_requirements() -> str:
    """`CUDA 12.9 images need >= 575.51.03, -cu130 images >= 580.65.06`, for messages."""
    return ", ".join(f"{'CUDA ' + c.value if not c.tag_suffix else c.tag_suffix} images "
                     f"{'need ' if i == 0 else ''}>= {c.min_driver_text}"
                     for i, c in enumerate(CudaBuild))


FIRST_RELEASE_WITH_ARCHITECTURE: dict[str, tuple[int, int, int]] = {
    "DeepseekV3ForCausalLM": (0, 6, 6),
    "Llama4ForConditionalGeneration": (0, 8, 3),
    "Qwen3ForCausalLM": (0, 8, 4),
    "Qwen3MoeForCausalLM": (0, 8, 4),
    "NemotronHForCausalLM": (0, 9, 1),
    "GptOssForCausalLM": (0, 10, 1),
    "Qwen3NextForCausalLM": (0, 10, 2),
    "Qwen3VLForConditionalGeneration": (0, 11, 0),
    "DeepseekV4ForCausalLM": (0, 20, 0),
}
"""The first vLLM release whose model registry has the architecture (`_TEXT_GENERATION_MODELS` /
`_MULTIMODAL_MODELS` in vllm/model_executor/models/registry.py; `_MODELS` in models/__init__.py for 0.6.0), read in
the wheels of 0.6.0 to 0.6.6, 0.7.0 to 0.7.3, 0.8.0 to 0.8.5, 0.9.0, 0.9.0.1, 0.9.1, 0.9.2, 0.10.0 to 0.10.2, 0.11.0,
0.19.0, 0.19.1, 0.20.0 to 0.20.2, 0.21.0, 0.22.0, 0.26.0 and 0.33.0: each is absent from the release just before the
one named and present in every later one read (kimi_k2 checkpoints name DeepseekV3ForCausalLM)."""

IN_EVERY_MODELLED_RELEASE = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM",
    "Gemma2ForCausalLM", "MixtralForCausalLM", "DeepseekV2ForCausalLM", "DeciLMForCausalLM",
})
"""Architectures of tpfit's other families, already in 0.6.0's registry (models/__init__.py `_MODELS`) and in every
release read since (DeciLMForCausalLM with the caveat of NEMOTRON_NAS_FROM)."""

NEMOTRON_NAS_FROM = (0, 8, 3)
"""`DeciLMForCausalLM` is in every registry from 0.6.0, but until 0.8.2 it is DeciLM-7B's class
(`("decilm", "DeciLMForCausalLM")`, models/decilm.py: a Llama with per-layer KV heads); 0.8.3's registry maps it to
`("nemotron_nas", "DeciLMForCausalLM")`, the class that reads Nemotron-NAS's `block_configs`."""

UNSUPPORTED_ARCHITECTURE = "Model architectures {architectures} are not supported for now. Supported architectures: "
"""vLLM's `ModelRegistry` refusal (0.6.0 models/__init__.py:170-172; 0.19.0 registry.py:968-971, 0.33.0
registry.py:1249-1252, the same text), followed there by every architecture the release knows (left out here)."""


def architecture_refusal(architecture: str, model_type: str, version: tuple[int, int, int]) -> str:
    """What vLLM `version` says when it cannot load `architecture`, and the release to use instead; "" when it
    can (or when tpfit has no record of the architecture)."""
    text = ".".join(map(str, version))
    if architecture == "DeciLMForCausalLM" and model_type == "nemotron-nas" and version < NEMOTRON_NAS_FROM:
        return (f"vLLM {text} maps DeciLMForCausalLM to DeciLM-7B's class (models/decilm.py), which does not read "
                "this Nemotron-NAS config's block_configs; use vLLM >= 0.8.3 (its registry maps DeciLMForCausalLM "
                "to nemotron_nas)")
    first = FIRST_RELEASE_WITH_ARCHITECTURE.get(architecture)
    if first is None or version >= first:
        return ""
    need = ".".join(map(str, first))
    return (f"vLLM {text} would stop with \"ValueError: " + UNSUPPORTED_ARCHITECTURE.format(architectures=[architecture])
            + f"[...]\"; use vLLM >= {need} (the first release whose model registry has {architecture}), e.g. "
            f"--vllm-version {need}")
