# parakeet-stream: one image for the captions agent (`captions`) and the dalston worker (`serve`).
#
#   docker build --build-arg PARAKEET_MODEL=nvidia/nemotron-speech-streaming-en-0.6b -t parakeet-stream .
#
# The checkpoint is downloaded at build time (`parakeet-stream download-files`), so containers start offline.
# PyPI's torch wheels bundle their CUDA libraries: the host needs only the NVIDIA driver and Container Toolkit.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugin ./plugin
COPY agent ./agent
RUN pip install ".[livekit,dalston]"

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 parakeet \
    && mkdir -p /models && chown parakeet /models
COPY --from=build /opt/venv /opt/venv
# HF_HOME: hub checkpoints (org/name); NEMO_CACHE_DIR: NGC ones. Both under /models, the shared cache volume.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HOME=/models/hf NEMO_CACHE_DIR=/models/nemo
USER parakeet
WORKDIR /home/parakeet

ARG PARAKEET_MODEL=nvidia/nemotron-speech-streaming-en-0.6b
ENV PARAKEET_MODEL=${PARAKEET_MODEL}
RUN parakeet-stream download-files --model "${PARAKEET_MODEL}"

ENTRYPOINT ["parakeet-stream"]
CMD ["serve"]
