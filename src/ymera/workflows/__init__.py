"""Workflows: versioned definitions of steps run as tasks (sequential, parallel,
conditional, pipeline, consensus), and durable runs of them (docs/workflows.md)."""
