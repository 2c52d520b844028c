"""POST /v1/embeddings: OpenAI's embeddings API on the configured embedding model."""

import base64
from typing import Any

from fastapi import APIRouter, Request

from chimera.api.errors import APIError
from chimera.api.protocol import EmbeddingRequest
from chimera.api.requests import decode_body, read_body, refuse_unknown_fields
from chimera.chat import UnknownModelError
from chimera.embeddings import EmbeddingService
from chimera.identity.limits import Limiter
from chimera.identity.principal import Principal

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    """One embedding per input text (unit norm), as float lists or base64 float32; usage counts word pieces."""
    service: EmbeddingService = request.app.state.embeddings
    principal: Principal = request.state.principal
    limiter: Limiter = request.app.state.limiter
    wire = refuse_unknown_fields(decode_body(await read_body(request, request.app.state.limits), EmbeddingRequest))
    if wire.model != service.model:
        raise UnknownModelError(f"The embedding model `{wire.model}` does not exist. Available: {service.model}")
    if wire.dimensions is not None and wire.dimensions != service.dim:
        raise APIError(400, f"dimensions: {service.model} embeds in {service.dim} dimensions only",
                       param="dimensions", code="unsupported_parameter")  # fmt: skip
    texts = [wire.input] if isinstance(wire.input, str) else wire.input
    admission = await limiter.admit(principal)  # a request like a chat's: 429 over the key's limits
    tokens = 0
    try:
        result = await service.embed(texts)
        tokens = result.prompt_tokens
    finally:
        await limiter.release(admission, tokens)
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, wire.encoding_format)}
        for i, vector in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": service.model, "usage": usage}


def _encoded(vector: Any, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
