"""Compression job, pure parts: recipes and their ids, model identity, artifact paths, calibration sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from compress_fakes import fake_model
from dialogue_runtime.compress import store
from dialogue_runtime.compress.calibration_set import load_calibration
from dialogue_runtime.compress.errors import CalibrationError, ModelError, RecipeError, StorageError
from dialogue_runtime.compress.identity import model_identity
from dialogue_runtime.compress.recipe import Recipe, Scheme, check_compatible, parse_scheme, recipe_id

SMOLLM2_DIMS = {"hidden_size": 576, "intermediate_size": 1536}


def test_group_size_must_divide_the_hidden_size_and_the_message_says_what_works() -> None:
    with pytest.raises(RecipeError, match=r"group size 128 does not divide the model's hidden_size 576.*e\.g\. 64"):
        check_compatible(Recipe(scheme=Scheme.W4A16, group_size=128), SMOLLM2_DIMS)
    check_compatible(Recipe(scheme=Scheme.W4A16, group_size=64), SMOLLM2_DIMS)
    check_compatible(Recipe(scheme=Scheme.W8A8), SMOLLM2_DIMS)


def test_w4a16_defaults_to_group_128_and_other_schemes_refuse_a_group_size() -> None:
    assert Recipe(scheme=Scheme.W4A16).group_size == 128
    with pytest.raises(RecipeError, match="takes no group size"):
        Recipe(scheme=Scheme.W8A8, group_size=64)
    with pytest.raises(RecipeError, match="positive"):
        Recipe(scheme=Scheme.W4A16, group_size=0)


def test_scheme_names_are_forgiving_but_unknown_ones_list_the_known() -> None:
    assert parse_scheme("w4a16") is Scheme.W4A16
    assert parse_scheme("fp8-dynamic") is Scheme.FP8_DYNAMIC
    assert parse_scheme("w4a16-asym") is Scheme.W4A16_ASYM
    with pytest.raises(RecipeError, match="known: FP8_DYNAMIC, W8A8, W4A16, W4A16_ASYM"):
        parse_scheme("int3")


def test_recipe_id_depends_on_what_changes_the_output_only() -> None:
    w8 = Recipe(scheme=Scheme.W8A8)
    assert recipe_id(w8, "cal-a") == recipe_id(Recipe(scheme=Scheme.W8A8, calibration="/elsewhere.jsonl"), "cal-a")
    assert recipe_id(w8, "cal-a") != recipe_id(w8, "cal-b"), "other calibration data, other artifact"
    assert recipe_id(Recipe(scheme=Scheme.W4A16, group_size=64), "c") != recipe_id(
        Recipe(scheme=Scheme.W4A16, group_size=32), "c"
    )
    fp8 = Recipe(scheme=Scheme.FP8_DYNAMIC)
    assert recipe_id(fp8, None) == recipe_id(Recipe(scheme=Scheme.FP8_DYNAMIC, num_calibration_samples=7), None)
    assert Recipe(scheme=Scheme.W4A16, group_size=64).label() == "w4a16-g64"
    assert Recipe(scheme=Scheme.W4A16_ASYM, group_size=64).label() == "w4a16-asym-g64"
    assert recipe_id(Recipe(scheme=Scheme.W4A16_ASYM), "c") != recipe_id(Recipe(scheme=Scheme.W4A16), "c")
    assert fp8.label() == "fp8-dynamic"


def test_identity_follows_content_not_location(tmp_path: Path) -> None:
    a = fake_model(tmp_path / "a")
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    other = fake_model(tmp_path / "other", weights=b"\x02" * 4096)
    assert model_identity(a) == model_identity(copy)
    assert model_identity(a) != model_identity(other)
    assert model_identity(a, full_hash_limit_bytes=0) != model_identity(other, full_hash_limit_bytes=0)
    assert model_identity(a) != model_identity(fake_model(tmp_path / "wider", hidden_size=640))


def test_identity_of_a_missing_or_empty_folder_says_which(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model folder not found"):
        model_identity(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weight files"):
        model_identity(tmp_path / "empty")


def test_artifact_paths_are_deterministic_and_readable(tmp_path: Path) -> None:
    p1 = store.artifact_paths(tmp_path, "SmolLM2-135M-Instruct", "ab" * 32, "w8a8", "cd" * 32)
    p2 = store.artifact_paths(tmp_path, "SmolLM2-135M-Instruct", "ab" * 32, "w8a8", "cd" * 32)
    assert p1 == p2
    assert p1.final_dir == tmp_path / f"smollm2-135m-instruct--{'ab' * 8}" / f"w8a8--{'cd' * 8}"
    assert store.artifact_paths(tmp_path, "x", "ab" * 32, "w8a8", "ce" * 32).final_dir != p1.final_dir


def test_the_artifact_folder_is_named_after_the_base_folder(tmp_path: Path) -> None:
    assert store.base_folder_name(Path("/models/SmolLM2-135M-Instruct/")) == "SmolLM2-135M-Instruct"
    assert store.base_folder_name(tmp_path / "smollm2" / ".") == "smollm2"


def test_a_finished_artifact_of_the_same_content_in_another_folder_is_reusable(tmp_path: Path) -> None:
    """Another folder with the same base id: a copy of the base under another name, or the layout that used the
    DialogueModel's name. The folder for this base wins when it holds one; a folder of another base never."""
    mine = store.artifact_paths(tmp_path, "smollm2", "a" * 64, "w8a8", "b" * 64)
    assert store.reusable(mine) == mine, "nothing finished anywhere: compress into this base's folder"
    old = store.artifact_paths(tmp_path, "chat", "a" * 64, "w8a8", "b" * 64)
    other_base = store.artifact_paths(tmp_path, "smollm2", "c" * 64, "w8a8", "b" * 64)
    other_recipe = store.artifact_paths(tmp_path, "smollm2", "a" * 64, "w8a8", "d" * 64)
    for paths in (old, other_base, other_recipe):
        paths.final_dir.mkdir(parents=True)
    assert store.reusable(mine) == mine, "folders without a marker are not finished artifacts"
    for paths in (old, other_base, other_recipe):
        (paths.final_dir / store.MARKER_NAME).write_text("{}")
    assert store.reusable(mine) == old
    assert store.reusable(mine).lock_file == tmp_path / f"chat--{'a' * 16}" / f".lock-w8a8--{'b' * 16}"
    mine.final_dir.mkdir(parents=True)
    (mine.final_dir / store.MARKER_NAME).write_text("{}")
    assert store.reusable(mine) == mine
    assert store.reusable(store.artifact_paths(tmp_path / "absent", "m", "a" * 64, "w8a8", "b" * 64)).model_dir == (
        tmp_path / "absent" / f"m--{'a' * 16}"
    )


def test_commit_is_marker_last_and_partials_are_cleaned(tmp_path: Path) -> None:
    paths = store.artifact_paths(tmp_path, "m", "a" * 64, "w8a8", "b" * 64)
    with store.locked(paths):
        crashed = paths.partial_dir(999999)
        crashed.mkdir(parents=True)
        (crashed / "model.safetensors").write_bytes(b"half")
        assert store.remove_partials(paths) == [crashed]
        assert not crashed.exists()
        partial = paths.partial_dir(1)
        partial.mkdir()
        (partial / "model.safetensors").write_bytes(b"done")
        assert store.read_marker(partial) is None
        store.commit(partial, paths, {"recipeId": "b" * 64})
    assert store.read_marker(paths.final_dir) == {"recipeId": "b" * 64}
    assert not partial.exists()
    link = store.link_variant(tmp_path / "compressed" / "chat-w8a8", paths.final_dir)
    assert link.resolve() == paths.final_dir.resolve()
    assert not Path(link.readlink()).is_absolute(), "relative, so it survives another mount point"
    assert store.link_variant(link, paths.final_dir) == link, "re-linking replaces the link"
    (tmp_path / "occupied").mkdir()
    with pytest.raises(StorageError, match="already there"):
        store.link_variant(tmp_path / "occupied", paths.final_dir)


def test_a_final_folder_without_marker_is_not_an_artifact_and_is_removed(tmp_path: Path) -> None:
    paths = store.artifact_paths(tmp_path, "m", "a" * 64, "w8a8", "b" * 64)
    paths.final_dir.mkdir(parents=True)
    (paths.final_dir / "model.safetensors").write_bytes(b"?")
    assert store.read_marker(paths.final_dir) is None
    assert store.remove_partials(paths) == [paths.final_dir]


def test_default_calibration_set_ships_chat_dialogues() -> None:
    cal = load_calibration("default")
    assert len(cal.samples) >= 32
    first = cal.samples[0]
    assert isinstance(first, tuple) and first[0]["role"] == "user"
    assert cal.digest == load_calibration("default").digest
    assert load_calibration("builtin:chat") == cal, "the API's builtin:chat names the shipped set"
    with pytest.raises(CalibrationError, match="known: builtin:chat, builtin:default"):
        load_calibration("builtin:code")


def test_calibration_files_in_each_format(tmp_path: Path) -> None:
    jsonl = tmp_path / "cal.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert load_calibration(str(jsonl)).samples == ("one", ({"role": "user", "content": "hi"},))
    txt = tmp_path / "cal.txt"
    txt.write_text("alpha\n\n beta \n")
    assert load_calibration(str(txt)).samples == ("alpha", "beta")


def test_calibration_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"calibration set not found: .*missing\.jsonl"):
        load_calibration(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(CalibrationError, match="is empty"):
        load_calibration(str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"prompt": 1}\n')
    with pytest.raises(CalibrationError, match="line 2"):
        load_calibration(str(bad))
