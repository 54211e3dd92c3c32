"""Regenerate the `tpfit deploy` examples in README.md from the code (tests check they match).

    python tools/update_readme_examples.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "serve": ("llama-3.1-70b --gpus 2xH100 --context 8192 --concurrency 3", "bash"),
    "docker": ("llama-3.1-70b --gpus 2xH100 --context 8192 --concurrency 3", "bash"),
    "compose": ("llama-3.1-70b --gpus 2xH100 --context 8192 --concurrency 3", "yaml"),
    "k8s": ("llama-3.1-70b --gpus 2xH100 --context 8192 --concurrency 3", "yaml"),
    "lws": ("llama-3.1-405b --gpus 2x8xH100 --context 8192", "yaml"),
    "ray": ("llama-3.1-405b --gpus 2x8xH100 --context 8192", "bash"),
}


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for fmt, (args, lang) in EXAMPLES.items():
        out = subprocess.run([sys.executable, "-m", "tpfit", "deploy", *args.split(), "--format", fmt], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        head = f"<summary><code>tpfit deploy {args} --format {fmt}</code></summary>\n\n```{lang}\n"
        pattern = re.escape(head) + r".*?```"
        text, n = re.subn(pattern, lambda _: head + out + "```", text, flags=re.S)
        if n != 1:
            raise SystemExit(f"README has no example block for --format {fmt}")
    readme.write_text(text)
    print("README examples updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
