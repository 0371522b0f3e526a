"""Quality-gate job: golden dialogues through base and variant, recovery scores."""
