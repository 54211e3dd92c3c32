"""Find the vLLM server in a command line and read its flags with the names vLLM's parser uses.

Recognised (vLLM docs, deploy-conventions.md §1.1): `vllm serve MODEL ...`, `python -m
vllm.entrypoints.openai.api_server --model MODEL ...`, and an image's arguments (`docker run ... IMAGE ARGS`,
whose entrypoint is the server). `env`, `sudo`, `exec`, `nohup`, `NAME=value` prefixes are skipped, and so are the
shell's reserved words that open a compound command (`if ...; then vllm serve ...; fi`).
"""

from __future__ import annotations

from tpfit.deployment.facts import Arg, VllmCommand, Where, Word
from tpfit.deployment.flags import NONE, REQUIRED, FlagTable
from tpfit.deployment.shell import RESERVED_WORDS, expand, is_assignment

PREFIXES = ("sudo", "exec", "nohup", "env", "time", "command", "stdbuf", "numactl", "taskset")
API_SERVER_MODULES = ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.api_server",
                      "vllm.entrypoints.launchers.api_server.entry")


def strip_prefixes(words: list[Word]) -> tuple[list[Word], dict[str, str], list[Word]]:
    """(the command without `sudo`/`env`/`NAME=value` prefixes, those assignments, their words)."""
    env: dict[str, str] = {}
    env_words: list[Word] = []
    i = 0
    while i < len(words):
        w = words[i].text
        if is_assignment(w):
            name, value = w.split("=", 1)
            env[name] = value
            env_words.append(words[i])
        elif w in PREFIXES or w in RESERVED_WORDS or (w.startswith("-") and i and words[i - 1].text in PREFIXES):
            pass
        else:
            break
        i += 1
    return words[i:], env, env_words


def server_start(words: list[Word]) -> tuple[int, bool] | None:
    """(index of the first vLLM argument, whether a positional MODEL is read) when `words` start a vLLM server."""
    if len(words) >= 2 and words[0].text.rsplit("/", 1)[-1] == "vllm" and words[1].text == "serve":
        return 2, True
    prog = words[0].text.rsplit("/", 1)[-1] if words else ""
    if prog.startswith("python") and len(words) >= 3 and words[1].text == "-m":
        if words[2].text in API_SERVER_MODULES:
            return 3, False
        if words[2].text == "vllm.entrypoints.cli.main" and len(words) >= 4 and words[3].text == "serve":
            return 4, True
    return None


def parse_args(words: list[Word], table: FlagTable, *, positional_model: bool, anchor: Word | None,
               store: object, variables: dict[str, str] | None = None) -> VllmCommand:
    """vLLM's flags in `words` (all after the program), as argparse would read them."""
    variables = variables or {}
    args: list[Arg] = []
    model, model_where = None, Where()
    i = 0
    while i < len(words):
        w = words[i]
        text = w.text
        if text.startswith("-O") and len(text) > 2:
            # -O3, -O=3, -Odecode: --optimization-level where the release has it (FlexibleArgumentParser), before
            # that -O (--compilation-config) with its value attached, as argparse reads a short option
            name = "--optimization-level" if table.has("--optimization-level") else table.canonical("-O")
            args.append(Arg(flag=text, name=name, value=text[3:] if text[2] == "=" else text[2:], where=w.where,
                            words=(w,)))
            i += 1
            continue
        if text.startswith("-") and len(text) > 1 and not _is_number(text):
            flag, eq, inline = text.partition("=")
            if "." in flag:  # `-cc.mode=3`, `--compilation-config.cudagraph_mode FULL`: one field of a JSON flag
                flag = flag.split(".", 1)[0]
                if not eq and i + 1 < len(words):
                    eq, inline, i = "=", words[i + 1].text, i + 1
            name = table.canonical(flag)
            arity = table.takes_value(name)
            value, used = None, (w,)
            if eq:
                value = inline
            elif arity != NONE and i + 1 < len(words):
                nxt = words[i + 1].text
                if arity == REQUIRED and not nxt.startswith("--") or not nxt.startswith("-") or _is_number(nxt):
                    value, used = nxt, (w, words[i + 1])
                    i += 1
            if value is not None:
                value = expand(value, variables)
            args.append(Arg(flag=flag, name=name, value=value, where=w.where, words=used))
            if name == "--model" and value is not None:
                model, model_where = value, w.where
        elif positional_model and model is None:
            model, model_where = expand(text, variables), w.where
        i += 1
    return VllmCommand(model=model, model_where=model_where, args=tuple(args), anchor=anchor, store=store)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
