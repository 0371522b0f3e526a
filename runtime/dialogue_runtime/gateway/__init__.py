"""The dialogue gateway: OpenAI-compatible front door with session-affinity routing."""
