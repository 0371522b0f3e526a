"""The DialogueModel API: pydantic v2 models, the single source of truth for the CRD schema."""
