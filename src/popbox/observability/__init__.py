"""What popbox tells its operator: Prometheus metrics, the structured log, counters."""
