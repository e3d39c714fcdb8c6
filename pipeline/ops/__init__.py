"""Operations adapters for every process: Prometheus metrics and the HTTP service endpoints
(/healthz, /readyz, /stats, /metrics)."""
