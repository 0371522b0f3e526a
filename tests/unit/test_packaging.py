"""The source folders are not packages: `operator/` must never shadow the standard library's `operator`."""

import importlib
import operator
import sys
from pathlib import Path


def test_stdlib_operator_is_not_shadowed() -> None:
    assert hasattr(operator, "itemgetter")
    assert Path(operator.__file__).parent == Path(importlib.import_module("os").__file__).parent
    assert not (Path(__file__).resolve().parents[2] / "operator" / "__init__.py").exists()


def test_packages_import_from_source_folders() -> None:
    import dialogue_operator
    import dialogue_runtime

    assert Path(dialogue_operator.__file__).parent.parent.name == "operator"
    assert Path(dialogue_runtime.__file__).parent.parent.name == "runtime"
    assert "operator" not in {m.split(".")[0] for m in sys.modules if m.startswith("dialogue_")}
