"""The guard service: defended predictions in production (FastAPI), with detection, drift
monitoring, per-key limits and an audit log of every decision."""
