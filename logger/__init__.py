"""The data plane: the sidecar proxy, the CloudEvents ingest endpoint, and producing to Kafka."""
