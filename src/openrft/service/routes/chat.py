"""`/v1/chat/completions`: base and fine-tuned (`ft:`) models, plain and streaming."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from openrft.errors import OpenRFTError
from openrft.service.chat import completion, generation_params, stream_chunks
from openrft.service.deps import DatabaseDep, ModelCacheDep, PrincipalDep, SettingsDep
from openrft.service.errors import APIError
from openrft.service.job_spec import resolve_model_path
from openrft.service.schemas import ChatCompletionRequest

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/chat", tags=["chat"])


@router.post("/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    db: DatabaseDep,
    cache: ModelCacheDep,
    settings: SettingsDep,
) -> dict[str, Any] | StreamingResponse:
    with db.session() as session:
        path = resolve_model_path(session, settings, principal.project_id, body.model)
    try:
        served = await run_in_threadpool(cache.get, path)
    except OpenRFTError:  # e.g. a catalog pull failed offline: details in the log only
        log.exception("loading model %r for chat failed", body.model)
        raise APIError(503, f"The model '{body.model}' could not be loaded; the server log "
                            "says why", param="model", code="model_unavailable",
                       type="server_error") from None
    params = generation_params(body, settings.chat_max_tokens)
    if body.stream:
        if body.n != 1:
            raise APIError(400, "n: streaming supports n=1 only", param="n")
        return StreamingResponse(stream_chunks(body, served, params),
                                 media_type="text/event-stream")
    return await run_in_threadpool(completion, body, served, params)
