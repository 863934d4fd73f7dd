# Names the dead-code check (vulture, `make lint`) reports as unused that are used, each
# with its reason. Vulture reads this file, nothing runs it. Add a name only with a
# reason; delete code that is really dead.
# ruff: noqa

# Grader implementations are loaded by dotted path (graders/base.py's registry).
MultiGraderImpl, StringCheckGraderImpl, TextSimilarityGraderImpl

# The context-manager protocol's argument.
exc_info

# Attributes set on other libraries' objects, which read them.
hf_quantizer, pad_token, pre_tokenizer, model_max_length, openapi
map_wn  # nltk's WordNet reader interface, called by nltk
_timeout, rootRank  # torch.distributed options (NCCL's timeout, a broadcast's root)

# OpenAI wire fields: part of the request/response schemas whether or not our code reads them.
image_tag, first_id, last_id, status_details, supervised, dpo, entity, tags
organization_id, result_files, user_provided_suffix

# The model catalog's source protocol (models/catalog.py).
ModelSource, describe, homepage

# Dataclass fields written out whole (dataclasses.asdict) into the demo's details.json.
valid_metrics

# Tests: stdlib http.server and pytest hooks, and fakes that mirror a real signature.
daemon_threads, block_on_close, protocol_version, log_message, do_GET, do_POST, should_exit
pytestmark, _attn_implementation, __spec__
lora_name, use_tqdm  # tests/rollout/fake_vllm.py mirrors vLLM's LoRARequest and generate()
example_id  # a parametrize argument that only names the test case
