"""Every tpfit exception, grouped by concern (as huggingface_hub's `errors.py`).

    TpfitError
    ├── UsageError(ValueError)        a bad flag or value: exit code 2
    │   └── FieldError                the same, as the web page shows it beside one form field
    ├── SpecError(ValueError)         a model tpfit cannot model (yet)
    ├── DocumentError(ValueError)     a saved document (a `tpfit plan --json` file) that is not one
    ├── SourceError(OSError)          a config, folder or hub repo that cannot be read
    │   └── OfflineError(ConnectionError)
    ├── NvmlError(RuntimeError)       GPUs could not be detected
    ├── CalibrationError(RuntimeError) a `tpfit calibrate` measurement failed
    └── ServerError(ConnectionError)  a vLLM server could not be reached, started or read
        ├── ServerTimeout(TimeoutError)     it did not answer in time (stalled)
        └── MetricsFormatError(ValueError)  its /metrics body is not Prometheus text
"""

from __future__ import annotations


class TpfitError(Exception):
    """Base class: the CLI prints `error: <message>` and exits non-zero."""

    exit_code = 1


# ---- INPUT -------------------------------------------------------------------------------


class UsageError(TpfitError, ValueError):
    """A flag or value tpfit cannot use, e.g. `--gpus 2xfoo: unknown GPU 'foo'; ...`."""

    exit_code = 2

    def __init__(self, message: str, *, flag: str | None = None, value: object = None) -> None:
        self.flag = flag
        self.value = value
        super().__init__(f"{flag} {value}: {message}" if flag and value is not None else message)


class FieldError(UsageError):
    """Bad input for one field of the web page: the CLI's own one-line message and the `plan` parameter it is
    about (`gpus`, `context`, `model`, ...), or None when no single field is at fault."""

    def __init__(self, message: str, *, field: str | None, flag: str | None) -> None:
        super().__init__(message)
        self.field = field
        self.flag = flag

    def to_dict(self) -> dict:
        return {"error": str(self), "field": self.field, "flag": self.flag}


class SpecError(TpfitError, ValueError):
    """A model config tpfit cannot turn into a ModelSpec, e.g. `not supported yet: <what>`."""

    exit_code = 2

    def __init__(self, message: str, *, model_id: str | None = None, field: str | None = None) -> None:
        self.model_id = model_id
        self.field = field
        self.detail = message
        """The message without the model's name, for a caller that names the file instead."""
        where = f"{model_id}: " if model_id else ""
        super().__init__(f"{where}{message}")


class DocumentError(TpfitError, ValueError):
    """A saved document that does not read back as the value it claims to hold, naming the field's path, e.g.
    `candidates.3.memory.verdict is 'maybe'; use one of starts, ...`."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


# ---- SOURCES -----------------------------------------------------------------------------


class SourceError(TpfitError, OSError):
    """A model source that cannot be read: missing folder, malformed config, unknown hub id."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(message)


class OfflineError(SourceError, ConnectionError):
    """The network is needed but offline mode is on (`HF_HUB_OFFLINE` / `TPFIT_OFFLINE`)."""


# ---- HARDWARE ----------------------------------------------------------------------------


class CalibrationError(TpfitError, RuntimeError):
    """A `tpfit calibrate` measurement that could not be made: a worker process that failed or hung, a kernel
    that raised, e.g. `all-reduce over 2 processes failed on rank 1: ...`."""

    exit_code = 1


class NvmlError(TpfitError, RuntimeError):
    """GPUs could not be read through NVML; the message says how to describe them instead."""

    exit_code = 2


# ---- SERVERS -----------------------------------------------------------------------------


class ServerError(TpfitError, ConnectionError):
    """A vLLM server that cannot be reached, started or read: `cannot connect to http://...`."""

    exit_code = 1

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class ServerTimeout(ServerError, TimeoutError):
    """A server that did not answer in time: `http://.../metrics did not answer in time (ReadTimeout)`."""


class MetricsFormatError(ServerError, ValueError):
    """A /metrics body that is not Prometheus text: `not Prometheus text (ValueError: ...)`."""
