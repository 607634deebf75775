# syntax=docker/dockerfile:1
# ragfirst: the HTTP API (`python -m service`) and the `ingest` command in one image.
#   docker build -t ragfirst .
#   docker run -p 8000:8000 -v ragfirst-data:/data ragfirst          # embedded Chroma under /data
# docker-compose.yml runs it against a Chroma server and Ollama instead.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

# PyPI's torch wheel for Linux is the CUDA build (gigabytes of GPU libraries nobody here uses);
# the CPU index has the same version without them.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# llama.cpp tunes itself for the CPU it is compiled on by default; an image runs on other machines,
# where such a build can die with "illegal instruction". Override for a host-specific build.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"

# llama-cpp-python has no wheel on PyPI for this platform: pip compiles it from the sdist.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# A venv is one folder to copy into the runtime stage, compilers left behind.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The pip cache mount keeps the compiled llama-cpp-python wheel (about five minutes of compiling)
# across rebuilds without putting it in a layer.
RUN --mount=type=cache,target=/root/.cache/pip pip install --upgrade pip

# torch before the project, by exact version, so that resolving the project finds it satisfied
# instead of fetching the CUDA build from PyPI.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY service service
# Not editable and no dev extras: the runtime stage gets the installed package, not /src. The
# embedding model and the GGUF file come in as PyPI packages, so nothing is downloaded at run time.
RUN --mount=type=cache,target=/root/.cache/pip \
    CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip install .


FROM ${PYTHON_IMAGE}

# llama.cpp is built with OpenMP; slim images lack the runtime library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid, so a host folder mounted at /data can be given to it (chown 10001).
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin ragfirst \
    && mkdir -p /data \
    && chown ragfirst:ragfirst /data

COPY --from=builder /opt/venv /opt/venv

# The models are on disk; a library reaching for the Hugging Face hub would only hang offline.
# RAG_CHROMA_PATH matters only without RAG_CHROMA_URL: the embedded store then lives in /data.
# RAG_MODEL_CACHE_DIR holds the int8 ONNX export of the embedder, made below at build time.
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    RAG_CHROMA_PATH=/data/chroma \
    RAG_MODEL_CACHE_DIR=/opt/ragfirst/models \
    PYTHONUNBUFFERED=1

WORKDIR /app

# Fail the build, not the first request: the packaged embedder loads offline, the prompt files and
# the GGUF file are there, and llama.cpp finds its shared libraries in this stage. Loading the
# embedder with the default onnx-int8 backend also exports it into RAG_MODEL_CACHE_DIR, so that
# containers start without the export. A container on a CPU of another kind (AVX2 rather than
# AVX-512 VNNI, say) exports its own on first start: the folder belongs to the ragfirst user.
RUN python -c "\
from ingest.embed import Embedder; \
from ingest.settings import Settings; \
from service.generate.local import packaged_model_path; \
from service.prompt import PromptSet; \
import llama_cpp; \
assert len(Embedder(Settings()).embed_query('ok')) > 0; \
PromptSet.load(None); \
assert packaged_model_path() is not None, 'packaged GGUF missing'" \
    && chown -R ragfirst:ragfirst /opt/ragfirst

USER ragfirst

EXPOSE 8000

# /healthz says the process answers; /readyz would fail the container whenever Chroma or the LLM
# endpoint is down, and restarting this one would not bring them back. No curl in slim images.
# The port is the one in CMD: change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["python", "-m", "service"]
# 0.0.0.0: inside a container, the loopback default is unreachable from the published port.
CMD ["--host", "0.0.0.0", "--port", "8000"]
