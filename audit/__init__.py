"""Audit tooling: the archive of the unified log and alerts, its manifest chain, and verification."""
