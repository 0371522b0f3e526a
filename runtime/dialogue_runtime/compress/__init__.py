"""Compression job: llm-compressor oneshot into a compressed-tensors checkpoint."""
