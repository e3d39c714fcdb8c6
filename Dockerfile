# The leadflow image: every Leadflow process (worker, sink, collector, init) runs from it.
#   docker build -t leadflow:0.1.0 .        (docker compose builds it for you)
FROM python:3.11.10-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
# rocksdb: the contact table on RocksDB (LEADFLOW_STORE=auto picks it when installed).
RUN pip install ".[rocksdb]" && rm -rf /src \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/leadflow leadflow

USER leadflow
WORKDIR /var/lib/leadflow
ENV LEADFLOW_DATA_DIR=/var/lib/leadflow/data \
    LEADFLOW_WEB_BIND=0.0.0.0 \
    LEADFLOW_WEB_PORT=6066
EXPOSE 6066
ENTRYPOINT ["leadflow"]
CMD ["worker", "--no-create-topics"]
