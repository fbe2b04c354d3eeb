# The tagging worker: `sightline worker` with the model loaded once per process.
#   docker build -f infra/docker/worker.Dockerfile -t sightline-worker .          (CUDA)
#   docker build -f infra/docker/worker.Dockerfile -t sightline-worker:cpu \
#     --build-arg BASE_IMAGE=ubuntu:24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .            (CPU)
# The build context is the repository root. Weights are not in the image: mount them and
# point SIGHTLINE_WEIGHTS at the file (nothing downloads weights at run time).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${BASE_IMAGE}

# Empty: torch from PyPI (its Linux wheels bring their own CUDA libraries; the host brings
# the driver through the NVIDIA container toolkit). Set to PyTorch's CPU index for a
# smaller CPU-only image.
ARG TORCH_INDEX_URL=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies first, in their own layer: code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} ".[worker]" \
    && pip uninstall -y sightline

COPY sightline ./sightline
COPY handlers ./handlers
COPY workers ./workers
COPY models ./models
COPY infra/__init__.py ./infra/__init__.py
COPY infra/migrations ./infra/migrations
RUN pip install --no-deps . && rm -rf build

RUN useradd --system --create-home --uid 10001 sightline
USER sightline

# Prometheus metrics when SIGHTLINE_METRICS_PORT=9100.
EXPOSE 9100
ENTRYPOINT ["sightline"]
CMD ["worker"]
