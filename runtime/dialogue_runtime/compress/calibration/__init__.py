"""Package data: the default calibration set (`default.jsonl`, short chat dialogues written for this project)."""
