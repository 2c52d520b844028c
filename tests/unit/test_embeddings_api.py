"""POST /v1/embeddings: the document index's own embedder in OpenAI's format, and its input limits.

In-process (httpx's ASGI transport) with the real packaged MiniLM, real Redis and the real rails; the official
`openai` client over real HTTP (it asks for base64 by default).
"""

import base64
from collections.abc import AsyncIterator

import httpx
import numpy as np
import openai
import pytest

from chimera.config import ChimeraConfig
from chimera.embeddings import MAX_INPUTS
from chimera.guardrails.nemo_rails import NemoRails
from chimera.tools.search.factory import build_ingestor, load_index, open_index
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process, local_config, served

MODEL = "all-minilm-l6-v2"
DOC = "# Lighthouses\n\nThe Fastnet lighthouse stands on a rock eleven kilometres off the coast of County Cork."


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    data_dir = tmp_path_factory.mktemp("chimera-embed")
    config = local_config(data_dir)
    doc = data_dir / "lighthouses.md"
    doc.write_text(DOC)
    with open_index(config.search, config.index_dir) as index:
        report = build_ingestor(config.search, index, config.index_dir).ingest([doc])
        assert report.count("added") == 1, report.summary()
    return config


@pytest.fixture(scope="module")
def indexed(config: ChimeraConfig) -> tuple[str, np.ndarray]:
    """The index's first chunk: the text it embedded, and the vector it holds.  # (D,)"""
    index = load_index(config.search, config.index_dir, None)
    chunk = next(iter(index.table))
    return chunk.index_text, index.dense.matrix()[0]


@pytest.fixture
async def http(config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(config, ScriptedEngine([]), redis_url, nemo_rails) as (_, client):
        yield client


async def test_an_embedding_is_the_indexs_vector_of_the_same_text(
    http: httpx.AsyncClient, indexed: tuple[str, np.ndarray]
) -> None:
    text, vector = indexed
    response = await http.post("/v1/embeddings", json={"model": MODEL, "input": [text, "lighthouse"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1]
    first = np.array(body["data"][0]["embedding"], dtype=np.float32)  # (D,)
    assert first.shape == vector.shape and np.allclose(first, vector, atol=1e-5)
    assert np.isclose(np.linalg.norm(np.array(body["data"][1]["embedding"])), 1.0, atol=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 3  # "lighthouse" + [CLS] [SEP] ...

    single = await http.post("/v1/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"})
    packed = np.frombuffer(base64.b64decode(single.json()["data"][0]["embedding"]), dtype="<f4")  # (D,)
    assert np.allclose(packed, vector, atol=1e-5)


async def test_the_embedding_model_is_listed_and_unknown_models_are_404(http: httpx.AsyncClient) -> None:
    ids = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
    assert ids[-1] == MODEL and "chimera-chat" in ids
    card = await http.get(f"/v1/models/{MODEL}")
    assert card.status_code == 200 and card.json()["id"] == MODEL
    assert (await http.get("/v1/models/chimera-chat")).json()["object"] == "model"
    missing = await http.get("/v1/models/gpt-9")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


BAD = [  # (body, status, param, code)
    ({"model": MODEL, "input": []}, 400, "input", "invalid_value"),
    ({"model": MODEL, "input": ["fine", ""]}, 400, "input.1", "invalid_value"),
    ({"model": MODEL, "input": ["x"] * (MAX_INPUTS + 1)}, 400, "input", "invalid_value"),
    ({"model": MODEL, "input": "word " * 400}, 400, "input.0", "invalid_value"),
    ({"model": MODEL, "input": [[101, 2023, 102]]}, 400, "input", "invalid_value"),
    ({"model": MODEL, "input": "x", "dimensions": 64}, 400, "dimensions", "unsupported_parameter"),
    ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format", "invalid_value"),
    ({"model": MODEL, "input": "x", "truncate": True}, 400, "truncate", "unrecognized_parameter"),
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "model", "model_not_found"),
]


@pytest.mark.parametrize(("body", "status", "param", "code"), BAD, ids=[f"{b[2]}:{b[3]}" for b in BAD])
async def test_bad_input_is_refused_and_the_server_stays_healthy(
    http: httpx.AsyncClient, body: dict[str, object], status: int, param: str, code: str
) -> None:
    response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and (error["param"] or "").startswith(param), error
    assert (await http.post("/v1/embeddings", json={"model": MODEL, "input": "still fine"})).status_code == 200


def test_the_openai_client_embeds_like_the_index(
    config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails, indexed: tuple[str, np.ndarray]
) -> None:
    text, vector = indexed
    with served(config, ScriptedEngine([]), redis_url, nemo_rails) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        result = client.embeddings.create(model=MODEL, input=[text, "Fastnet"])  # base64 on the wire
        floats = client.embeddings.create(model=MODEL, input=text, encoding_format="float")
    assert [d.index for d in result.data] == [0, 1] and result.usage.prompt_tokens > 0
    assert np.allclose(np.array(result.data[0].embedding), vector, atol=1e-5)
    assert np.allclose(np.array(floats.data[0].embedding), vector, atol=1e-5)
