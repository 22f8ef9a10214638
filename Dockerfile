# One image for every enrollbridge process (worker, http-source, ingest); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY connectors connectors
COPY streams streams
COPY enrollbridge enrollbridge
RUN pip install --no-cache-dir . && useradd --system --home-dir /var/lib/enrollbridge --create-home enrollbridge \
    && install -d -o enrollbridge /var/lib/enrollbridge/store
USER enrollbridge
WORKDIR /var/lib/enrollbridge
ENTRYPOINT ["enrollbridge"]
