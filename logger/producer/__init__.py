"""The producer core that the sidecar, the ingest endpoint and the trigger share.

A component builds CloudEvents (`capture`) and hands them to the sink (`sink`), which produces
them to Kafka within a memory budget and spills what Kafka cannot take now to a disk spool
(`spool`), replayed later. `runtime` runs the sink with its spool and admin port for a
component; `settings` and `metrics` are the sink's. `upstream` pools the keep-alive connections
to the model server that the sidecar and the trigger call it over. Nothing here imports a
component.
"""
