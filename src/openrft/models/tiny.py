"""Tiny, local, deterministic causal LMs for tests, demos and benchmarks (no hub access).

`build_tiny_model` writes a transformers-format directory (a random-init `LlamaForCausalLM`
plus a byte-level BPE tokenizer trained here with `tokenizers`) that loads with
`AutoModelForCausalLM.from_pretrained(dir)` / `AutoTokenizer.from_pretrained(dir)`.
Two builds with the same arguments give byte-identical files: the corpus is generated from
a seeded RNG, BPE training runs single-threaded and weights come from a seeded torch RNG.

Tokens: `<|pad|> <|bos|> <|eos|>` and the role markers `<|system|> <|developer|> <|user|>
<|assistant|>` are special (skipped when decoding). The reasoning markers `<think>` and
`</think>` are atomic added tokens that are *not* skipped when decoding (Qwen3's convention),
so the rollout engine can split reasoning from the answer in the decoded text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLES = ("system", "developer", "user", "assistant")
SPECIAL_TOKENS = [PAD, BOS, EOS, *(f"<|{role}|>" for role in ROLES)]
THINK_START, THINK_END = "<think>", "</think>"

# <|bos|> then, per message, <|role|>content<|eos|>; the generation prompt is <|assistant|>,
# so a completion ends when the model emits <|eos|>. Content may be a string or a list of
# OpenAI content parts ({"type": "text", "text": ...}).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'developer', 'user', 'assistant'] %}"
    "{{ raise_exception('unsupported chat role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

_WORDS = (
    "the a an and or but so if then than that this these those is are was were be been have "
    "has had do does did will would can could should may might must it its we you they he she "
    "i me my your our their number sum total add plus minus times product difference answer "
    "question result value equal compute calculate what how many much first second third next "
    "last small large more less most least each every some any all none one two three four "
    "five six seven eight nine ten hundred thousand patient patients symptom symptoms disease "
    "diagnosis rare gene genes clinical feature features onset child adult fever seizure "
    "weakness pain rash delay growth heart kidney liver muscle eye skin brain blood test "
    "likely unlikely because therefore think step carefully check again final correct wrong "
    "true false let us see start end solve problem simple hard short long good best explain "
    "json name score list reason output format yes no maybe"
).split()


def build_corpus(seed: int = 0, n_arith: int = 1500, n_prose: int = 1500) -> list[str]:
    """A small deterministic corpus: chat-shaped arithmetic with reasoning, plus prose."""
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(n_arith):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op = rng.choice("+-*")
        result = a + b if op == "+" else a - b if op == "-" else a * b
        lines.append(
            f"<|user|>What is {a} {op} {b}?<|eos|><|assistant|>"
            f"<think>{a} {op} {b} = {result}.</think>The answer is {result}.<|eos|>"
        )
    for _ in range(n_prose):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 20))]
        if rng.random() < 0.3:
            words.append('{"answer": "' + rng.choice(_WORDS) + '"}')
        lines.append(" ".join(words) + rng.choice(".?!,"))
    return lines


@contextlib.contextmanager
def _serial_tokenizers() -> Iterator[None]:
    """BPE training is only reproducible single-threaded; `tokenizers` reads this per call."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def build_tokenizer(
    vocab_size: int = 512, corpus: Iterable[str] | None = None, seed: int = 0
) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE tokenizer and wrap it for transformers (left padding)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(corpus) if corpus is not None else build_corpus(seed)
    with _serial_tokenizers():
        raw.train_from_iterator(texts, trainer=trainer)
    raw.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in (THINK_START, THINK_END)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        truncation_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int = 128,
    vocab_size: int = 512,
    max_positions: int = 512,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Write a tiny random Llama + trained tokenizer to `out_dir` and return the path.

    `vocab_size` is the BPE target; the model's vocabulary is exactly `len(tokenizer)` so
    every embedding row decodes to a real token. `corpus` (an iterable of texts) replaces
    the built-in corpus to give the tokenizer a domain vocabulary.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size, corpus, seed)
    tokenizer.model_max_length = max_positions
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _make_tokenizer_config_portable(out / "tokenizer_config.json")
    logger.info("built tiny model in %s (%d parameters)", out, model.num_parameters())
    return out


def _make_tokenizer_config_portable(path: Path) -> None:
    """transformers 5 names the class `TokenizersBackend`, unknown to 4.x (e.g. under vLLM);
    `PreTrainedTokenizerFast` loads the same tokenizer.json in both."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def openrft_data_dir() -> Path:
    """Where OpenRFT caches local artefacts: $OPENRFT_HOME, else ~/.cache/openrft."""
    return Path(os.environ.get("OPENRFT_HOME") or Path.home() / ".cache" / "openrft")


def default_tiny_model_dir(**build_kwargs: object) -> Path:
    """The cached default tiny model (built on first use), for demos and the service docs.

    The directory name includes a hash of the build arguments, so different settings never
    share a cache entry. Built in a temporary sibling and renamed, so a half-written model
    is never seen by a concurrent caller.
    """
    key = hashlib.sha256(json.dumps(build_kwargs, sort_keys=True, default=str).encode())
    target = openrft_data_dir() / "models" / f"tiny-{key.hexdigest()[:12]}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tiny_model(staging, **build_kwargs)  # type: ignore[arg-type]
        with contextlib.suppress(OSError):  # another process may have won the race
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
