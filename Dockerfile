# The real-time scoring service: `lead-scoring serve` on port 8000.
#   docker build -t lead-scoring .
#   docker run -p 8000:8000 -v "$PWD/data:/data" lead-scoring
# The service reads the Feast registry + online store and the MLflow registry under the data dir
# (LEAD_SCORING_DATA_DIR; MLFLOW_TRACKING_URI / LEAD_SCORING_PREDICTION_LOG_URL point elsewhere).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEAD_SCORING_DATA_DIR=/data \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# uv from PyPI, the version the Makefile uses.
RUN pip install --no-cache-dir uv==0.13.9 && useradd --create-home --uid 10001 app
WORKDIR /app

# Dependencies first (cached while only the code changes), exactly as uv.lock pins them: the
# service's own (no `pipeline` extra: no dbt, Dagster, Evidently, Streamlit) plus the drivers of
# the server stores (`backends`: PostgreSQL, Redis). Then the code, installed editable so
# ml/config.py finds config/ beside it.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-cache --extra backends --no-install-project
COPY config config
COPY feature_repo feature_repo
COPY ml ml
RUN uv sync --locked --no-cache --extra backends

RUN mkdir -p /data && chown app:app /data
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"

CMD ["lead-scoring", "serve", "--host", "0.0.0.0", "--port", "8000"]
