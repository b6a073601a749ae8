"""The HTTP producers: the sidecar proxy (`sidecar/`) and the CloudEvents ingest endpoint
(`ingest.py`), with the producer core they and the trigger share (`producer/`)."""
