# CPU image (default):   docker build -t streamanon .
# GPU image:             docker build -t streamanon:gpu --build-arg VARIANT=gpu \
#                          --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 .
# Run:                   docker run --rm -v "$PWD:/data" streamanon /data/drive.mp4
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG VARIANT=cpu

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv ffmpeg libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/streamanon
COPY pyproject.toml README.md ./
COPY streamanon ./streamanon
COPY engines ./engines
COPY examples ./examples

# Same install as the README. The GPU variant swaps in onnxruntime-gpu and a CUDA torch;
# TensorRT is an optional extra that needs NVIDIA's own wheels (see docs/generator.md).
RUN if [ "$VARIANT" = "gpu" ]; then \
        pip install torch && pip install -e ".[torch]" && \
        pip uninstall -y onnxruntime && pip install onnxruntime-gpu ; \
    else \
        pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu || pip install "torch==2.13.0"; \
        pip install -e ".[torch]" ; \
    fi
# Ψ's torch weights are converted from the installed dlib model at first use; do it once at
# build time into a cache every user of the image can read.
ENV STREAMANON_CACHE=/opt/streamanon/cache
RUN python -m streamanon.identity.convert

ENTRYPOINT ["streamanon"]
CMD ["--help"]
