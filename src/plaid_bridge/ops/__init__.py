"""Running the service: liveness and readiness probes, Prometheus metrics, and the migrations that
bring a database to the schema this code expects."""
