# The real-time scoring service: `lead-scoring serve` on port 8000.
#   docker build -t lead-scoring .
#   docker run -p 8000:8000 -v "$PWD/data:/data" lead-scoring
# The service reads the Feast registry + online store and the MLflow registry under the data dir
# (LEAD_SCORING_DATA_DIR; MLFLOW_TRACKING_URI / LEAD_SCORING_PREDICTION_LOG_URL point elsewhere).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEAD_SCORING_DATA_DIR=/data

RUN useradd --create-home --uid 10001 app
WORKDIR /app

# Dependencies first (cached while only the code changes), then the code. The install command
# is the README's / Makefile's: pip install -e ".[dev]".
COPY pyproject.toml README.md ./
COPY ml/__init__.py ml/__init__.py
RUN pip install --no-cache-dir -e ".[dev]"
COPY config config
COPY feature_repo feature_repo
COPY ml ml

RUN mkdir -p /data && chown app:app /data
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"

CMD ["lead-scoring", "serve", "--host", "0.0.0.0", "--port", "8000"]
