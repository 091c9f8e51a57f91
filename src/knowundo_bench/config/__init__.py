"""What a spec says: its pydantic models (sections, plugin parameter bases, training settings),
reading YAML, --set overrides and paths anchored to the spec's folder. Imports only core; never torch."""
