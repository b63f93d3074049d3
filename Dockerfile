# The campaign engine: `docker compose up` runs `campaign migrate` then the worker.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY campaign ./campaign
COPY migrations ./migrations
RUN pip install . && useradd --create-home --uid 10001 campaign

USER campaign
ENTRYPOINT ["campaign"]
CMD ["--help"]
