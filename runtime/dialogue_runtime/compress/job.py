"""The compression job (runtime): identify the input, reuse a finished artifact or compress and commit one.

`python -m dialogue_runtime.compress --base PATH --scheme W8A8 --calibration default --output-root PATH`.
Steps (each printed with its time): identify, precheck (recipe vs model), reuse check, space check (the
estimated artifact size vs the volume's free space, see `space.py`), load, calibrate+quantize, save, commit.
The artifact's folder depends on the base model (folder name and content identity) and the recipe only, so
every requester of the same base + recipe shares it (see `store.py`); `--link` gives each its own path.
Exit 0 with a JSON result in the termination log; on a failure the user can act on, exit 1 with one line
`<Reason>: <message>` (reasons: InvalidRecipe, CalibrationSetMissing, ModelNotFound, StorageFull,
CompressionFailed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialogue_runtime.compress import space, store
from dialogue_runtime.compress.calibration_set import DEFAULT, CalibrationSet, load_calibration
from dialogue_runtime.compress.errors import CompressJobError, StorageError, ToolError
from dialogue_runtime.compress.identity import model_identity, read_config
from dialogue_runtime.compress.recipe import Recipe, check_compatible, parse_scheme, recipe_id
from dialogue_runtime.compress.termination import Progress, fail, one_line, set_cpu_threads, succeed

JOB = "compress"


@dataclass(frozen=True)
class JobResult:
    artifact: Path
    reused: bool
    base_id: str
    recipe_id: str
    size_bytes: int
    timings_s: dict[str, float]
    link: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "reused": self.reused,
            "baseId": self.base_id,
            "recipeId": self.recipe_id,
            "sizeBytes": self.size_bytes,
            "timingsSeconds": self.timings_s,
            "link": str(self.link) if self.link else None,
        }


def _tool_error(what: str, exc: BaseException) -> CompressJobError:
    if isinstance(exc, OSError):
        err = store.storage_error(exc, Path(exc.filename or "?"))
        if err is not None:
            return err
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text:  # e.g. safetensors' Rust writer, not an OSError
        return StorageError(
            f"no space left on the output volume: {what} failed: {type(exc).__name__}: {one_line(text)}"
        )
    return ToolError(f"{what} failed: {type(exc).__name__}: {one_line(str(exc))}")


def run(
    base: Path,
    recipe: Recipe,
    output_root: Path,
    *,
    link: Path | None = None,
    progress: Progress | None = None,
) -> JobResult:
    """Produces (or reuses) the artifact for `base` + `recipe` under `output_root`."""
    progress = progress or Progress(JOB)
    progress.step("identify", f"base {base}, recipe {recipe.label()}")
    config = read_config(base)
    calibration: CalibrationSet | None = load_calibration(recipe.calibration) if recipe.needs_calibration else None
    base_id = model_identity(base)
    rid = recipe_id(recipe, calibration.digest if calibration else None)
    paths = store.artifact_paths(output_root, store.base_folder_name(base), base_id, recipe.label(), rid)
    progress.note(f"base id {base_id[:16]}, recipe id {rid[:16]}, artifact {paths.final_dir}")
    progress.step("precheck")
    check_compatible(recipe, config)  # before touching the volume: a refused recipe leaves nothing behind
    found = store.reusable(paths)  # the same base content under another folder name may hold it already
    if found != paths:
        progress.note(f"the same base and recipe are already compressed in {found.final_dir}")
    paths = found
    waiting = f"another job holds {paths.lock_file} while it makes this artifact; waiting for it"
    with store.locked(paths, on_wait=lambda: progress.step("wait", waiting)):  # only one job compresses it
        progress.step("reuse-check")
        if store.read_marker(paths.final_dir) is not None:
            progress.done()
            progress.note(f"reused {paths.final_dir} (finished artifact found, nothing compressed)")
            return _finish(paths, base_id, rid, reused=True, link=link, progress=progress)
        for removed in store.remove_partials(paths):
            progress.note(f"removed half-written output {removed}")
        progress.step("space-check", str(output_root))
        need = space.estimate(base, recipe.scheme)  # before loading: a full volume fails in seconds, not hours
        free = space.check_free_space(output_root, need, recipe.label())
        progress.note(
            f"need ~{need.need_bytes / space.MIB:.1f} MiB ({need.explain()}), {free / space.MIB:.1f} MiB free"
        )
        partial = paths.partial_dir(os.getpid())
        try:
            _compress_into(base, recipe, calibration, partial, progress)
            progress.step("commit")
            marker = {
                "baseId": base_id,
                "recipeId": rid,
                "recipe": recipe.canonical(calibration.digest if calibration else None),
                "base": str(base),
                "calibration": calibration.source if calibration else None,
                "timingsSeconds": dict(progress.timings_s),
            }
            store.commit(partial, paths, marker)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # never leave a half-written output behind
            raise
        return _finish(paths, base_id, rid, reused=False, link=link, progress=progress)


def _compress_into(
    base: Path, recipe: Recipe, calibration: CalibrationSet | None, partial: Path, progress: Progress
) -> None:
    progress.step("load", "importing llm-compressor, reading the base model")
    from dialogue_runtime.compress import oneshot  # noqa: PLC0415 - torch/llmcompressor only once work is needed

    try:
        model, tokenizer = oneshot.load_base(base)
    except Exception as exc:
        raise _tool_error(f"loading the base model from {base}", exc) from exc
    detail = f"{len(calibration.samples)} calibration samples" if calibration else "no calibration needed"
    progress.step("quantize", f"{recipe.label()}, {detail}")
    try:
        oneshot.compress(model, tokenizer, recipe, calibration)
    except Exception as exc:
        raise _tool_error(f"llm-compressor oneshot ({recipe.label()})", exc) from exc
    progress.step("save", str(partial))
    try:
        partial.mkdir(parents=True)
        oneshot.save(model, tokenizer, partial)
    except Exception as exc:
        raise _tool_error(f"saving the compressed model to {partial}", exc) from exc


def _finish(
    paths: store.ArtifactPaths,
    base_id: str,
    rid: str,
    *,
    reused: bool,
    link: Path | None,
    progress: Progress,
) -> JobResult:
    linked = store.link_variant(link, paths.final_dir) if link else None
    progress.done()
    return JobResult(
        artifact=paths.final_dir,
        reused=reused,
        base_id=base_id,
        recipe_id=rid,
        size_bytes=store.folder_bytes(paths.final_dir),
        timings_s=dict(progress.timings_s),
        link=linked,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dialogue_runtime.compress", description=__doc__)
    parser.add_argument("--base", required=True, type=Path, help="base model folder (safetensors + config.json)")
    parser.add_argument("--scheme", required=True, help="FP8_DYNAMIC, W8A8, W4A16 or W4A16_ASYM")
    parser.add_argument("--group-size", type=int, default=None, help="weight group size (W4A16; default 128)")
    parser.add_argument("--calibration", default=DEFAULT, help="'default' (shipped) or a .jsonl/.txt path")
    parser.add_argument("--num-calibration-samples", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--output-root", required=True, type=Path, help="model store root (e.g. the PVC mount)")
    parser.add_argument("--link", type=Path, default=None, help="also make PATH a symlink to the artifact")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the Job log; our steps say enough
    set_cpu_threads()
    try:
        recipe = Recipe(
            scheme=parse_scheme(args.scheme),
            group_size=args.group_size,
            calibration=args.calibration,
            num_calibration_samples=args.num_calibration_samples,
            max_seq_length=args.max_seq_length,
        )
        result = run(args.base, recipe, args.output_root, link=args.link)
    except CompressJobError as exc:
        fail(JOB, exc.reason, str(exc))
        return 1
    except OSError as exc:
        error = store.storage_error(exc, args.output_root)
        if error is not None:
            fail(JOB, error.reason, str(error))
        else:
            fail(JOB, "CompressionFailed", f"{type(exc).__name__}: {exc}")
        return 1
    succeed(JOB, result.to_dict())
    return 0
