"""Model families: one module per family turns a config.json into decoder layers, the way vLLM's model class
for that `model_type` builds them.

A new `model_type` is one module here with a builder registered by `@family("my_type")`, plus its tests;
the module named for a `model_type` (`llama.py` for "llama") is imported first when there is one, and every
module of this package when the type is not found there or the whole registry is read. Builders read the config
through `HFConfig`, whose accessors raise `SpecError` naming a missing or malformed key.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from msgspec import Struct

from tpfit.errors import SpecError
from tpfit.model.spec import LayerSpec, MLASpec

_MISSING = object()


class HFConfig(Struct, frozen=True, kw_only=True):
    """A config.json as a family reads it: `text` is the language model's part (`text_config` when nested)."""

    text: dict
    outer: dict
    """The whole config.json (architectures, vision_config, quantization_config)."""
    model_id: str
    model_type: str

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value, or `default` when the key is absent or null."""
        value = self.text.get(key)
        return default if value is None else value

    def need(self, key: str) -> Any:
        value = self.text.get(key)
        if value is None:
            raise SpecError(f"config.json has no {key!r}; is this a complete model config?", model_id=self.model_id,
                            field=key)
        return value

    def int(self, key: str, default: Any = _MISSING) -> int:
        """A whole number (`64`, `64.0`); `default` when absent or null, else SpecError naming the key."""
        value = self.need(key) if default is _MISSING else self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        return _whole(value, key, self.model_id)

    def float(self, key: str, default: Any = _MISSING) -> float:
        value = self.need(key) if default is _MISSING else self.get(key, default)
        if not isinstance(value, (int, float)):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise SpecError(f"config.json {key} = {value!r} is not a number", model_id=self.model_id,
                                field=key) from None
        return float(value)

    def first_int(self, *keys: str, default: Any = _MISSING) -> int:
        """The first of `keys` present (configs name the same count differently: num_local_experts, num_experts)."""
        for key in keys:
            if self.text.get(key):
                return self.int(key)
        if default is _MISSING:
            raise SpecError(f"config.json has none of {', '.join(map(repr, keys))}", model_id=self.model_id,
                            field=keys[0])
        return default

    def list(self, key: str, default: Any = _MISSING) -> list:
        """A list; `default` when absent or null, else SpecError naming the key."""
        value = self.need(key) if default is _MISSING else self.get(key, default)
        if not isinstance(value, list):
            raise SpecError(f"config.json {key} must be a list, got {value!r}", model_id=self.model_id, field=key)
        return value

    def section(self, key: str) -> HFConfig:
        """A nested object of the config (a DeciLM block's `attention`), read with the same accessors."""
        return self.nested(self.need(key), key)

    def nested(self, value: Any, name: str) -> HFConfig:
        """`value` (found at `name` in this config) as a config of its own."""
        if not isinstance(value, dict):
            raise SpecError(f"config.json {name} must be an object, got {value!r}", model_id=self.model_id, field=name)
        return HFConfig(text=value, outer=self.outer, model_id=self.model_id, model_type=self.model_type)

    # ---- the dimensions every family shares ----

    @property
    def hidden_size(self) -> int:
        return self.int("hidden_size")

    @property
    def num_hidden_layers(self) -> int:
        return self.int("num_hidden_layers")

    @property
    def num_attention_heads(self) -> int:
        return self.int("num_attention_heads")

    @property
    def num_key_value_heads(self) -> int:
        return self.int("num_key_value_heads", 0) or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        explicit = self.int("head_dim", 0) or self.int("attention_head_dim", 0)
        if explicit:
            return explicit
        if self.num_attention_heads <= 0:
            raise SpecError(f"num_attention_heads must be > 0, got {self.num_attention_heads}",
                            model_id=self.model_id, field="num_attention_heads")
        return self.hidden_size // self.num_attention_heads


def _whole(value: Any, key: str, model_id: str) -> int:
    if not isinstance(value, (int, float)) or value != int(value):
        raise SpecError(f"config.json {key} = {value!r} is not a whole number", model_id=model_id, field=key)
    return int(value)


class Decoder(Struct, frozen=True, kw_only=True):
    """What a family builds from a config: the decoder layers and what sits outside them."""

    layers: tuple[LayerSpec, ...]
    extra_params: int = 0
    """Parameters outside the decoder stack (a final LayerNorm bias, attention sinks)."""
    mla: MLASpec | None = None
    """Multi-head latent attention: then the KV cache holds one latent per token (kv heads = heads)."""
    tied_by_default: bool = False
    """transformers' default for `tie_word_embeddings` when the config leaves it out."""
    notes: tuple[str, ...] = ()


Builder = Callable[[HFConfig], Decoder]
_FAMILIES: dict[str, Builder] = {}
_loaded = False


def family(*model_types: str) -> Callable[[Builder], Builder]:
    """Register a builder for the config.json `model_type`s it reads."""
    def register(build: Builder) -> Builder:
        for model_type in model_types:
            if model_type in _FAMILIES:
                raise RuntimeError(f"model_type {model_type!r} is registered twice")
            _FAMILIES[model_type] = build
        return build
    return register


def _load() -> None:
    global _loaded
    if not _loaded:
        for name in sorted(os.listdir(__path__[0])):
            if name.endswith(".py") and not name.startswith("_"):
                importlib.import_module(f"{__name__}.{name[:-3]}")
        _loaded = True


def find_family(model_type: str) -> Builder | None:
    if model_type not in _FAMILIES and not _loaded:
        # the module named for the type registers it without the other eleven being imported (about 0.2 ms each at
        # every `tpfit plan` start); a type another module registers ("mistral": llama.py) loads them all
        name = model_type.replace("-", "_")
        if name.isidentifier() and not name.startswith("_") and os.path.isfile(os.path.join(__path__[0], f"{name}.py")):
            importlib.import_module(f"{__name__}.{name}")
    if model_type not in _FAMILIES:
        _load()
    return _FAMILIES.get(model_type)


def model_types() -> tuple[str, ...]:
    """Every `model_type` tpfit models, sorted."""
    _load()
    return tuple(sorted(_FAMILIES))
