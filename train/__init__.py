"""The offline wing: ingest -> sessions -> fit -> evaluate -> export."""
