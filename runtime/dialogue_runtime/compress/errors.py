"""Errors of the compression and evaluation jobs (pure); each message says what failed and where.

CompressJobError
├── RecipeError        the recipe cannot apply to this model (bad scheme, group size vs hidden size)
├── CalibrationError   the calibration set is missing, empty or unreadable
├── ModelError         the base (or variant) model folder is missing or unreadable
├── StorageError       the output volume is full or not writable
└── ToolError          llm-compressor / transformers failed; the message quotes their error
"""

from __future__ import annotations


class CompressJobError(Exception):
    """A job failed in a way the user can act on; `str(exc)` is the one-line termination message."""

    reason = "CompressionFailed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class RecipeError(CompressJobError):
    reason = "InvalidRecipe"


class CalibrationError(CompressJobError):
    reason = "CalibrationSetMissing"


class ModelError(CompressJobError):
    reason = "ModelNotFound"


class StorageError(CompressJobError):
    reason = "StorageFull"


class ToolError(CompressJobError):
    reason = "CompressionFailed"
