"""Shell words with their place in the text, and the vLLM server commands among them.

The scanner finds word boundaries (quotes, `$(...)`, comments, `\\` continuations, `;` `&&` `|`) and keeps
each word's span, so a fix can edit the original text in place; `shlex` turns each word into the string the
program receives. `vllm serve`, `python -m vllm.entrypoints.openai.api_server` and `docker|podman run IMAGE`
are recognised (deploy-conventions.md §1.1).
"""

from __future__ import annotations

import bisect
import re
import shlex
from dataclasses import dataclass, field

from tpfit.deployment.facts import Where, Word

OPERATORS = ("&&", "||", ";;", ";", "&", "|", "(", ")", "\n")
RESERVED_WORDS = ("if", "then", "elif", "else", "while", "until", "do", "{", "!")
"""bash's reserved words a command may follow on the same line (`then vllm serve ...`, `do ...`, `{ ...; }`): the
command starts after them."""
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VAR = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))$")


@dataclass(slots=True)
class TextStore:
    """A text that holds shell words: the file itself, or a YAML string (`sh -c "..."`)."""

    text: str
    first_line: int = 1
    """Line of the file where the text starts."""
    path: str = ""
    """YAML path of the string ("" for the file)."""
    node: object = None
    key: object = None
    """`node[key]` is the YAML string (None for the file)."""
    read_only: bool = False
    """A copy a fix cannot write back (a quoted string with escapes)."""
    _newlines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._newlines = [i for i, c in enumerate(self.text) if c == "\n"]

    def where(self, offset: int) -> Where:
        return Where(line=self.first_line + bisect.bisect_right(self._newlines, offset - 1), path=self.path)


@dataclass(frozen=True, slots=True)
class Token:
    raw: str
    start: int
    end: int
    op: bool = False


def _heredoc(tokens: list[Token], k: int) -> tuple[str, bool] | None:
    """(delimiter, strip leading tabs) when tokens[k] opens a here-document (`<<EOF`, `<<-EOF`, `<< 'EOF'`)."""
    raw = tokens[k].raw
    if not raw.startswith("<<") or raw.startswith("<<<") or tokens[k].op:
        return None
    strip = raw.startswith("<<-")
    word = raw[3:] if strip else raw[2:]
    if not word and k + 1 < len(tokens) and not tokens[k + 1].op:
        word = tokens[k + 1].raw
    word = word.replace("'", "").replace('"', "").replace("\\", "")
    return (word, strip) if word else None


def _heredoc_bodies(text: str, start: int, docs: list[tuple[str, bool]], out: list[Token]) -> int:
    """Read the bodies of the here-documents opened on the line that ends at `start`, each scanned on its own
    (a command fed to `ssh host bash <<EOF` is one; an apostrophe in a `cat <<EOF` text must not open a quote
    that swallows the rest of the script). Returns where the script goes on."""
    i = start
    for word, strip in docs:
        body_start = i
        while i < len(text):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            line = text[i:end]
            if (line.lstrip("\t") if strip else line) == word:
                body = text[body_start:i]
                out.extend(Token(t.raw, t.start + body_start, t.end + body_start, t.op) for t in scan(body))
                out.append(Token("\n", end, end, op=True))
                i = end + 1
                break
            i = end + 1
        else:  # no closing line: bash warns and takes the rest as the document
            out.extend(Token(t.raw, t.start + body_start, t.end + body_start, t.op) for t in scan(text[body_start:]))
            return len(text)
    return i


def scan(text: str) -> list[Token]:
    """Split shell text into words and operators, each with its span. Never raises: an unclosed quote runs
    to the end of the text, as it would in the shell (which then reports it). Here-document bodies are scanned
    each on its own, after the line that opens them."""
    out: list[Token] = []
    docs: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "\\" and text.startswith("\\\n", i):
            i += 2
            continue
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        op = None if text.startswith("&>", i) else next((o for o in OPERATORS if text.startswith(o, i)), None)
        if op:
            out.append(Token(op, i, i + len(op), op=True))
            i += len(op)
            if op == "\n" and docs:
                i = _heredoc_bodies(text, i, docs, out)
                docs = []
            continue
        start, depth = i, 0
        while i < n:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                j = text.find("'", i + 1)
                i = n if j < 0 else j + 1
                continue
            if c == '"':
                i += 1
                while i < n and text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
                i += 1
                continue
            if c == "`":
                j = text.find("`", i + 1)
                i = n if j < 0 else j + 1
                continue
            if text.startswith("$(", i) or text.startswith("${", i):
                depth += 1
                i += 2
                continue
            if depth and c == "(":  # `$((4096 * 2))`, `$(f (x))`: nested parentheses close inside the word
                depth += 1
                i += 1
                continue
            if depth and c in ")}":
                depth -= 1
                i += 1
                continue
            if not depth and c in " \t\r\n;&|()" and not (c == "&" and (i == start or text[i - 1] in "<>")):
                # `2>&1`, `>&2`, `&>log` are redirections, not a background job
                break
            i += 1
        out.append(Token(text[start:min(i, n)], start, min(i, n)))
        opened = _heredoc(out, len(out) - 2) if len(out) > 1 and out[-2].raw in ("<<", "<<-") else \
            _heredoc(out, len(out) - 1)
        if opened and opened not in docs:
            docs.append(opened)
    return out


def unquote(raw: str) -> str:
    """The string the program receives for one shell word (quotes removed, escapes applied)."""
    try:
        parts = shlex.split(raw, comments=False)
    except ValueError:
        return raw.strip("'\"")
    return " ".join(parts) if parts else ""


def commands(store: TextStore) -> list[list[Word]]:
    """The simple commands of a text: runs of words between operators."""
    return script_commands(store)[0]


def script_commands(store: TextStore) -> tuple[list[list[Word]], frozenset[int]]:
    """The simple commands of a text, and the indices of those that replace the shell: `exec CMD` outside any
    subshell, `{ }` group, pipeline or background job. The script runs nothing after one of them, so a command
    written below it runs only where the `exec` was in a branch not taken (`if ...; then exec A; fi; exec B`)."""
    cmds: list[list[Word]] = []
    ends: set[int] = set()
    words: list[Word] = []
    before, depth = "", 0
    for t in [*scan(store.text), Token("\n", len(store.text), len(store.text), op=True)]:
        if not t.op:
            words.append(Word(text=unquote(t.raw), where=store.where(t.start), span=(t.start, t.end), store=store))
            continue
        if words:
            texts = [w.text for w in words]
            depth += texts[0] == "{"
            first = next((x for x in texts if x not in RESERVED_WORDS and not is_assignment(x)), "")
            if first == "exec" and len(texts) > 1 and not depth and before != "|" and t.raw not in ("&", "|"):
                ends.add(len(cmds))
            depth -= texts[0] == "}" and depth > 0
            cmds.append(words)
            words = []
        depth += 1 if t.raw == "(" else -1 if t.raw == ")" and depth > 0 else 0
        before = t.raw
    return cmds, frozenset(ends)


def expand(value: str, variables: dict[str, str]) -> str:
    """`$MODEL`, `${MODEL}`, `${MODEL:-x}`: the value assigned earlier in the script or the default; else as is."""
    m = _VAR.match(value)
    if not m:
        return value
    name = m.group(1) or m.group(3)
    if name in variables:
        return variables[name]
    return m.group(2) if m.group(2) is not None else value


def is_assignment(word: str) -> bool:
    return bool(_ASSIGNMENT.match(word))
