"""End-to-end pipelines: real sources, the real CLI, real targets."""
