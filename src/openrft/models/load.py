"""Load a Hugging Face causal LM for training or generation: catalog name, local dir,
PEFT adapter, hub id.

One entry point, `load_model`, so the trainer, evaluation, the CLI and the service agree on
dtype/device defaults, padding side, pad token and chat template. Everything that can go
wrong with the *name* (missing path, unreachable hub, no such repo) becomes one
`NotFound`/`InvalidInput` line instead of a transformers traceback.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openrft.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

# Used only when a tokenizer ships without a chat template (base models): plain-text turns,
# so any tokenizer can render it; the assistant turn is left open for generation.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %}"
    "{{ '\n\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraSettings:
    """A new LoRA adapter: `rank` r, scaling `alpha` (effective scale alpha/r), `dropout`
    on the adapter input, and `target_modules` ("all-linear": every linear layer except the
    LM head, peft's shorthand; or a list of module names such as ["q_proj", "v_proj"])."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"


@dataclass
class LoadedModel:
    """A model ready to use: `name` is what the caller asked for, `base_name` the base model
    (differs for adapters), `is_adapter` whether `model` is a peft model."""

    model: Any  # transformers PreTrainedModel or peft PeftModel
    tokenizer: Any  # transformers tokenizer: left padding, pad token set, chat template set
    name: str
    base_name: str
    is_adapter: bool
    device: torch.device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise InvalidInput("device", f"unknown device {device!r}: {err}") from None


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """"auto" -> float32 on CPU (bf16 matmuls are slow there and training wants fp32),
    bfloat16 on GPUs that support it, else float16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise InvalidInput("dtype", f"expected 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def load_model(
    name_or_path: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
    trainable: bool = False,
    lora: LoraSettings | None = None,
) -> LoadedModel:
    """Load a catalog model by name, a model directory, a PEFT adapter directory or a hub id.

    A name that is not a local path but names a model in the models directory (see
    `openrft.models.catalog`) loads from there; a catalog model not pulled yet is pulled
    on first use (once, cached), so configs and the API can say "smollm2-135m-instruct".

    - `trainable=False`: inference only (eval mode, no gradients).
    - `trainable=True, lora=None`: full fine-tuning (every parameter trainable), or, for an
      adapter directory, continued training of that adapter.
    - `lora=LoraSettings(...)`: wrap in a new LoRA adapter whose parameters are the only
      trainable ones (implies `trainable`).
    """
    name = str(name_or_path)
    source = resolve_model_reference(name)
    target_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target_device)
    adapter_config = _adapter_config(source)
    if adapter_config is not None:
        base_name = str(adapter_config.get("base_model_name_or_path") or "")
        if not base_name:
            raise InvalidInput(f"{name}/adapter_config.json", "base_model_name_or_path is empty")
        if lora is not None:
            logger.warning("%s is already a LoRA adapter; its own settings are used", name)
        base_source = resolve_model_reference(base_name)
        base = _load_transformers_model(base_source, torch_dtype)
        model = _attach_adapter(base, source, trainable=trainable or lora is not None)
        tokenizer = _load_tokenizer(source if _has_tokenizer(source) else base_source)
    else:
        base_name = name
        model = _load_transformers_model(source, torch_dtype)
        tokenizer = _load_tokenizer(source)
        if lora is not None:
            model = _wrap_lora(model, lora)
        else:
            model.requires_grad_(trainable)
    model.to(target_device)
    if not (trainable or lora is not None):
        model.eval()
    _align_generation_config(model, tokenizer)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        base_name=base_name,
        is_adapter=adapter_config is not None or lora is not None,
        device=target_device,
    )


def resolve_model_reference(name: str) -> str:
    """What transformers should open for `name`: a local path as given; else a model in
    the models directory (a catalog model is pulled there on first use); else `name`
    itself (a hub id, found in the local hub cache or fetched when a hub is reachable)."""
    if _is_local_reference(name):
        return name
    from openrft.models import catalog

    pulled = catalog.pulled_path(name)
    if pulled is not None:
        return str(pulled)
    if name in catalog.CATALOG:
        logger.warning("model %s is not pulled yet: pulling it into %s (once; later runs "
                       "reuse it)", name, catalog.models_dir())
        return str(catalog.ensure_model(name))
    return name


def _is_local_reference(name: str) -> bool:
    return Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))


def _adapter_config(name: str) -> dict[str, Any] | None:
    path = Path(name).expanduser() / "adapter_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InvalidInput(f"{path}:{err.lineno}", f"invalid JSON: {err.msg}") from None


def _has_tokenizer(name: str) -> bool:
    directory = Path(name).expanduser()
    return (directory / "tokenizer_config.json").is_file() or (
        directory / "tokenizer.json"
    ).is_file()


def _check_local_dir(name: str) -> None:
    directory = Path(name).expanduser()
    if not directory.is_dir():
        raise NotFound("model", name, hint="no such local directory")
    if not any((directory / name).is_file() for name in ("config.json", "adapter_config.json")):
        raise InvalidInput(
            str(directory), "not a model directory: no config.json (nor adapter_config.json)"
        )


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """Call a transformers `from_pretrained`, turning a missing/unreachable model into NotFound."""
    if _is_local_reference(name):
        _check_local_dir(name)
        return loader.from_pretrained(str(Path(name).expanduser()), **kwargs)
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as err:  # transformers reports hub/network/repo problems as OSError
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NotFound(
            "model",
            name,
            hint=f"not a local directory and the hub is unreachable or has no such model: "
            f"{first_line}",
        ) from None


def _load_transformers_model(name: str, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM

    return _from_pretrained(AutoModelForCausalLM, name, dtype=dtype)


def _load_tokenizer(name: str) -> Any:
    """Left padding (generation appends on the right), a pad token, and a chat template."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        # Reusing eos is safe: the engine tracks lengths with masks, never by pad id.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token_id is None:
            raise InvalidInput(name, "tokenizer has no pad, eos or unk token to pad with")
    if not tokenizer.chat_template:
        logger.warning("%s has no chat template; using OpenRFT's plain-text fallback", name)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def _wrap_lora(model: Any, lora: LoraSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        with _quiet_peft_deprecations():
            return get_peft_model(model, config)
    except ValueError as err:
        raise InvalidInput("lora.target_modules", str(err).splitlines()[0]) from None


def _attach_adapter(base: Any, adapter_dir: str, *, trainable: bool) -> Any:
    from peft import PeftModel

    with _quiet_peft_deprecations():
        return PeftModel.from_pretrained(
            base, str(Path(adapter_dir).expanduser()), is_trainable=trainable
        )


@contextmanager
def _quiet_peft_deprecations() -> Iterator[None]:
    """peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates
    with a FutureWarning on every LoRA load: noise for users, nothing they can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        yield


def _align_generation_config(model: Any, tokenizer: Any) -> None:
    """`model.generate` (used by oracles and some callers) must pad with our pad token."""
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
