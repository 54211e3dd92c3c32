"""Derive captures of hosts we can't reach from the real 2xH100 capture, changing only the fields named
in each fixture's folder name (issue #6). Output: tests/data/gpu-hosts/derived/<name>/.

    python tools/derive_host_fixtures.py
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "fixtures" / "gpu-hosts" / "h100x2-nvlink"
OUT = ROOT / "tests" / "data" / "gpu-hosts" / "derived"


def sub(text: str, pattern: str, repl: str, count: int = 0) -> str:
    new, n = re.subn(pattern, repl, text, count=count, flags=re.S)
    if not n:
        raise SystemExit(f"pattern not found: {pattern}")
    return new


def gpu_block(xml: str, index: int) -> tuple[int, int]:
    starts = [m.start() for m in re.finditer(r"<gpu id=", xml)]
    end = xml.index("</gpu>", starts[index]) + len("</gpu>")
    return starts[index], end


def edit_gpu(xml: str, index: int, fn) -> str:
    a, b = gpu_block(xml, index)
    return xml[:a] + fn(xml[a:b]) + xml[b:]


def main() -> int:
    xml = (REAL / "nvidia-smi-q.xml").read_text()
    topo = (REAL / "topo.txt").read_text()
    variants = {
        # driver 535 supports CUDA 12.2: too old for the CUDA 12.9 and 13.0 vLLM images
        "driver-535.183.01-cuda-12.2": (
            sub(sub(xml, r"<driver_version>[^<]*<", "<driver_version>535.183.01<"),
                r"<cuda_version>[^<]*<", "<cuda_version>12.2<"), topo),
        # MIG mode enabled on GPU 0 (current_mig only)
        "mig-enabled-gpu0": (edit_gpu(xml, 0, lambda g: sub(g, r"<current_mig>[^<]*<", "<current_mig>Enabled<")), topo),
        # another process holds 40960 MiB on GPU 1: used/free and one process_info entry
        "other-process-40960MiB-gpu1": (edit_gpu(xml, 1, lambda g: sub(sub(sub(
            g, r"(<fb_memory_usage>.*?<used>)[^<]*<", r"\g<1>40960 MiB<", 1),
            r"(<fb_memory_usage>.*?<free>)[^<]*<", r"\g<1>40119 MiB<", 1),
            r"<processes>\s*</processes>",
            "<processes>\n\t\t\t<process_info>\n\t\t\t\t<gpu_instance_id>N/A</gpu_instance_id>\n\t\t\t\t"
            "<compute_instance_id>N/A</compute_instance_id>\n\t\t\t\t<pid>4242</pid>\n\t\t\t\t<type>C</type>\n\t\t\t\t"
            "<process_name>python3</process_name>\n\t\t\t\t<used_memory>40960 MiB</used_memory>\n\t\t\t"
            "</process_info>\n\t\t</processes>", 1)), topo),
        # consumer PCIe cards: product name + memory of an RTX 4090 (24564 MiB), NV18 -> PHB, P2P OK -> CNS
        "rtx4090-name-memory-link-PHB-p2p-CNS": (
            sub(sub(sub(xml, r"<product_name>[^<]*<", "<product_name>NVIDIA GeForce RTX 4090<"),
                    r"(<fb_memory_usage>\s*<total>)[^<]*<", r"\g<1>24564 MiB<"),
                r"(<fb_memory_usage>.*?<free>)[^<]*<", r"\g<1>24084 MiB<"),
            sub(sub(topo, r"NV18", "PHB "), r"(---p2p-r.*?)OK(.*?)OK", r"\1CNS\2CNS", 1)),
        # GPU 1 trained its PCIe link at x8 (current_link_width only)
        "pcie-width-x8-gpu1": (edit_gpu(xml, 1, lambda g: sub(g, r"<current_link_width>[^<]*<",
                                                                "<current_link_width>8x<")), topo),
    }
    shutil.rmtree(OUT, ignore_errors=True)
    for name, (x, t) in variants.items():
        folder = OUT / f"h100x2-nvlink__{name}"
        folder.mkdir(parents=True)
        (folder / "nvidia-smi-q.xml").write_text(x)
        (folder / "topo.txt").write_text(t)
    print(f"wrote {len(variants)} derived captures under {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
