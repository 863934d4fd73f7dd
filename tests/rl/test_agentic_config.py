"""The agentic job shape in RFTConfig: Azure's `method.reinforcement` fields, validated."""

from __future__ import annotations

import pytest

from openrft.errors import InvalidInput
from openrft.rl.config import config_from_dict, resolve

GRADER = {"type": "endpoint", "name": "remote", "url": "http://127.0.0.1:9/grade",
          "rate_limit": 50, "pass_threshold": 0.5}
TOOL = {"name": "lookup", "server_url": "http://127.0.0.1:9/lookup",
        "headers": {"x-api-key": "k"}}


def body(**reinforcement):
    return {"model": "m", "training_file": "t.jsonl",
            "method": {"type": "reinforcement",
                       "reinforcement": {"grader": GRADER, **reinforcement}}}


def test_openai_nesting_with_tools_and_episode_steps():
    cfg = resolve(config_from_dict(body(tools=[TOOL], max_episode_steps=4)), 8)
    assert cfg.tools == [TOOL] and cfg.max_episode_steps == 4
    assert cfg.grader == GRADER


def test_defaults_ten_steps_with_tools_and_one_without():
    assert resolve(config_from_dict(body(tools=[TOOL])), 8).max_episode_steps == 10
    plain = resolve(config_from_dict(body()), 8)
    assert plain.tools is None and plain.max_episode_steps == 1


@pytest.mark.parametrize(("change", "where"), [
    ({"tools": [{**TOOL, "server_url": "ftp://x"}]}, "request: tools.0.server_url"),
    ({"tools": [{**TOOL, "extra": 1}]}, "request: tools.0.extra"),
    ({"tools": [{"server_url": "http://x"}]}, "request: tools.0.name"),
    ({"tools": [TOOL], "max_episode_steps": 0}, "request: max_episode_steps"),
])
def test_bad_agentic_fields_name_the_field(change, where):
    with pytest.raises(InvalidInput) as info:
        config_from_dict(body(**change), source="request")
    assert info.value.location == where
