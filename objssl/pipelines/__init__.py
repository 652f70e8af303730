"""Multi-stage pipelines built from objssl runs (ORL: BYOL, correspondence, object-level training)."""
