"""Package data: the default golden dialogue set (`default.jsonl`, written for this project, plain and factual)."""
