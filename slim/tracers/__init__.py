"""tracers package."""
