"""`tpfit plan`'s options as a web form: the fields, a query string as plan arguments, the plan's view.

The page accepts exactly what the command line accepts, because it is parsed by the `plan` command's own
options (typer's click command) and planned by the same function; an error names the flag it is about.
"""

from __future__ import annotations

import enum
import functools
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath

from tpfit.errors import FieldError, NvmlError, SourceError, SpecError, TpfitError, UsageError

OUTPUT_PARAMS = frozenset({"model", "show_all", "as_json", "html"})
"""`plan` parameters that choose an output, not the plan: not form fields."""
MAX_QUERY_VALUE_CHARS = 300
"""A form value longer than this is refused before parsing (a model id or a GPU string is far shorter)."""
UPLOAD_PREFIX = "upload:"
UPLOADED_MODEL_FOLDER = "/path/to/model"
"""What an uploaded config.json's deploy files serve: the page never learns the folder it came from, and the server's
temporary copy (or the `upload-<hash>` name vLLM would look up on the Hub) is no model to serve."""
PAGE_KEYS = ("model", "host")
"""Query keys that are not `plan` options: MODEL, and `host` (the page's "this host (NVML)" choice, no --gpus)."""
TRUE_WORDS = ("1", "true", "on", "yes")
FALSE_WORDS = ("0", "false", "off", "no")
"""How a query spells an on/off field (`enforce_eager=true`); anything else is refused."""


@functools.lru_cache(maxsize=None)
def _command(name: str):
    """The typer app's click command NAME: its parameters are the page's fields. Built once: typer rebuilds every
    command of the app for it (~30 ms), which five calls a request made most of the page's answer time."""
    from typer.main import get_command

    from tpfit.cli.app import app

    return get_command(app).commands[name]


@functools.lru_cache(maxsize=1)
def _plan_hints() -> dict[str, object]:
    """The `plan` command function's hints: its click command's callback unwrapped (typer wraps it with
    functools), so this module need not import cli/plan.py, which imports it for --html."""
    import inspect

    return typing.get_type_hints(inspect.unwrap(_command("plan").callback))


def _annotation(param) -> object:
    """The Python type of a `plan` parameter, Optional unwrapped: read from the command function's own hints,
    not from typer's internals (which differ between typer releases)."""
    annotation = _plan_hints()[param.name]
    if typing.get_origin(annotation) is typing.Union:
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _kind(param) -> tuple[str, list[str]]:
    annotation = _annotation(param)
    if getattr(param, "is_bool_flag", False):
        return "bool", []
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", [str(m.value) for m in annotation]
    return {int: "int", float: "float"}.get(annotation, "str"), []


def _is_path(param) -> bool:
    annotation = _annotation(param)
    return isinstance(annotation, type) and issubclass(annotation, PurePath)


def form_fields() -> list[dict]:
    """Every `plan` option as a field: name, flags, kind, bounds, choices, default and help."""
    fields = []
    for p in _command("plan").params:
        if p.name in OUTPUT_PARAMS or getattr(p, "hidden", False) or _is_path(p):
            continue  # a path option would let the page read this machine's files
        kind, choices = _kind(p)
        default = p.default.value if isinstance(p.default, enum.Enum) else p.default
        fields.append({
            "name": p.name, "flag": p.opts[0], "flags": list(p.opts), "off_flag": (p.secondary_opts or [None])[0],
            "kind": kind, "choices": choices, "min": getattr(p.type, "min", None), "max": getattr(p.type, "max", None),
            "default": default if isinstance(default, (int, float, str, bool)) else None,
            "help": getattr(p, "help", None) or "",
        })
    return fields


def _field_for_flag(flag: str | None) -> str | None:
    if not flag:
        return None
    if flag == "MODEL":
        return "model"
    for p in _command("plan").params:
        if flag in (*p.opts, *getattr(p, "secondary_opts", ())):
            return p.name
    return None


def args_from_query(query: Mapping[str, str]) -> list[str]:
    """`tpfit plan` arguments from a form's query (keys are parameter names), in the command's option order.

    Valid: {"model": "llama-3.1-8b", "gpus": "2xH100", "context": "8192", "enforce_eager": "true"}
    -> ["llama-3.1-8b", "--gpus", "2xH100", "--context", "8192", "--enforce-eager"].
    Empty values are left out (the option's default); booleans are "true"/"false".
    """
    args = [query.get("model", "").strip()]
    known = {f["name"]: f for f in form_fields()}
    for key, raw in query.items():
        if key not in known and key not in PAGE_KEYS:  # a misspelt field would be planned with its default
            raise FieldError(f"{key}: not a field of tpfit plan; the fields are {', '.join([*PAGE_KEYS, *known])}",
                             field=None, flag=None)
        if len(raw) > MAX_QUERY_VALUE_CHARS:
            raise FieldError(f"{known[key]['flag'] if key in known else key}: {len(raw)} characters is "
                             f"too long (at most {MAX_QUERY_VALUE_CHARS})", field=key, flag=None)
    for name, f in known.items():
        value = query.get(name, "").strip()
        if not value:
            continue
        if f["kind"] == "bool":
            if value.lower() in TRUE_WORDS:
                args.append(f["flag"])
            elif value.lower() in FALSE_WORDS:
                if f["off_flag"]:
                    args.append(f["off_flag"])
            else:  # read as neither, it was left out: planned without the flag the user asked for
                raise FieldError(f"{f['flag']} {value}: use true or false", field=name, flag=f["flag"])
        else:
            args += [f["flag"], value]
    return args


def query_from_params(params: Mapping[str, object]) -> dict[str, str]:
    """The form's query for parsed `plan` parameters (the inverse of `args_from_query`, defaults left out)."""
    query = {"model": str(params["model"])}
    for f in form_fields():
        value = params.get(f["name"])
        if isinstance(value, enum.Enum):
            value = value.value
        if value is None or value == f["default"]:
            continue
        query[f["name"]] = ("true" if value else "false") if f["kind"] == "bool" else str(value)
    return query


def parse_args(args: Sequence[str]) -> dict:
    """The `plan` command's parameters for ARGS, parsed and checked by its own options."""
    import typer

    from tpfit.cli.app import usage_error_line

    try:
        ctx = _command("plan").make_context("plan", list(args))
    except typer.TyperException as err:
        param = getattr(err, "param", None)
        flag = param.opts[0] if param is not None and getattr(param, "opts", None) else None
        raise FieldError(usage_error_line(err), field=_field_for_flag(flag), flag=flag) from None
    return dict(ctx.params)


def field_error(err: TpfitError) -> FieldError:
    """The form field a planning error belongs to, with the CLI's own one-line message."""
    if isinstance(err, UsageError):
        return FieldError(str(err), field=_field_for_flag(err.flag), flag=err.flag)
    if isinstance(err, (SpecError, SourceError)):
        return FieldError(str(err), field="model", flag="MODEL")
    if isinstance(err, NvmlError):
        return FieldError(str(err), field="gpus", flag="--gpus")
    return FieldError(str(err), field=None, flag=None)


def plan_from_params(params: Mapping[str, object]):
    """The Plan `tpfit plan` makes for these parameters (the same function, not a copy)."""
    from tpfit.request import PlanRequest

    try:
        return PlanRequest.from_options(params).make()
    except TpfitError as err:  # as main() does: anything else is a bug, not bad input
        raise field_error(err) from None


def deploy_args_for(args: Sequence[str]) -> list[str] | None:
    """ARGS where `tpfit deploy` takes every one of their flags (so it makes the same plan), else None."""
    accepted = {o for p in _command("deploy").params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}
    if all(not a.startswith("-") or a in accepted for a in args[1:]):
        return list(args)
    return None


def view_for_plan(plan, params: Mapping[str, object], *, uploaded: bool = False) -> dict:
    """The page's view of a plan made from PARAMS: its JSON, its arguments, its deploy files."""
    from tpfit.report.view import make_view

    args = args_from_query(query_from_params(params))
    if uploaded:  # run with the real folder in its place, that command writes these files
        deploy_args = deploy_args_for([UPLOADED_MODEL_FOLDER, *args[1:]])
        return make_view(plan, plan_args=args, deploy_args=deploy_args, model_path=UPLOADED_MODEL_FOLDER)
    # the folder vLLM loads, as `tpfit deploy` names it (a config.json's folder, not the file)
    return make_view(plan, plan_args=args, deploy_args=deploy_args_for(args), model_path=plan.model.local_path)


def check_model_name(model: str) -> None:
    """The page plans bundled models, Hugging Face ids and uploads: never a path on the server's disk."""
    from tpfit.model.load import existing_path

    if not model:
        raise FieldError("MODEL: choose a bundled model, type a Hugging Face id (owner/name) or upload "
                         "a config.json", field="model", flag="MODEL")
    if model.startswith("-"):  # `plan`'s parser would read it as an option (--help, --json), not as MODEL
        raise FieldError(f"MODEL {model}: a model name does not start with '-'; choose a bundled model, type a "
                         "Hugging Face id (owner/name) or upload a config.json", field="model", flag="MODEL")
    if (model.startswith((".", "/", "~", "\\")) or model.endswith(".json") or ".." in model
            or existing_path(model) is not None):
        raise FieldError(f"MODEL {model}: the page reads no files on this machine; choose a bundled model, "
                         "a Hugging Face id (owner/name), or upload the model's config.json", field="model",
                         flag="MODEL")


def plan_view_from_query(query: Mapping[str, str], *, uploads: Mapping[str, Path]) -> tuple[dict, dict]:
    """(plan JSON, view) for a form query; raises FieldError naming the field at fault.

    Args:
        uploads: uploaded config.json files by their `upload:<id>` model name; nothing else is read.
    """
    model = query.get("model", "").strip()
    uploaded = model.startswith(UPLOAD_PREFIX)
    if uploaded:
        if model not in uploads:
            raise FieldError(f"MODEL {model}: this upload is gone (the server restarted?); upload the "
                             "config.json again", field="model", flag="MODEL")
        args = args_from_query({**query, "model": str(uploads[model])})
    else:
        check_model_name(model)
        args = args_from_query(query)
    try:
        params = parse_args(args)
        plan = plan_from_params(params)
    except FieldError as err:
        if not uploaded:
            raise
        raise _as_uploaded(err, uploads[model]) from None
    if uploaded:
        plan = _named_as_uploaded(plan, uploads[model])
    view = view_for_plan(plan, {**params, "model": uploads[model].name} if uploaded else params, uploaded=uploaded)
    return view["plan"], view


def _as_uploaded(err: FieldError, path: Path) -> FieldError:
    """ERR naming the file as the page's user knows it (`config.json`, or the name their file had): not the server's
    temporary copy (its path, or the `upload-<hash>` folder a config without a name is named by)."""
    message = str(err).replace(str(path), path.name).replace(path.parent.name, path.name)
    return FieldError(message, field=err.field, flag=err.flag)


def _named_as_uploaded(plan, path: Path):
    """PLAN with its model named as the page's user knows it. A file of its own name (`Qwen--Qwen3-32B.json`) is
    already named as `tpfit plan FILE` names it, and a config with `_name_or_path` by that; a `config.json` is named
    by its folder, which here is the server's `upload-<hash>` (the page never learns the user's): `config.json`."""
    from msgspec.structs import replace

    if plan.model.model_id != path.parent.name:
        return plan

    def named(p):
        return replace(p, model=replace(p.model, model_id=path.name))

    return replace(named(plan), fallback=plan.fallback and named(plan.fallback))


def write_report(path: Path, plan, params: Mapping[str, object]) -> None:
    """`tpfit plan --html PATH`: the page of this plan as one file (report/html.py), no extra needed."""
    import typer

    from tpfit.report.html import render_report

    try:
        path.write_text(render_report(view_for_plan(plan, params)), encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write it: {err.strerror or err}", flag="--html", value=str(path)) from None
    typer.echo(f"wrote {path}", err=True)
