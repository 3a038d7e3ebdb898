"""A damaged file in a results folder: what can be read is analysed, what was skipped is
said with its fix; when nothing of a table the analysis needs is readable, one line
naming the file and the fix, exit 3. And ``compare`` of a folder with itself says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from memsweep.cli.main import main
from memsweep.store import open_results
from memsweep.store.compact import compact_results
from memsweep.testing.synthetic import SynthTrial, write_sweep

TRIALS = [
    SynthTrial("t0", 20_000, plateau_s=15.0),
    SynthTrial("t1", 40_000, plateau_s=15.0),
    SynthTrial("t2", 20_000, model="64x64", plateau_s=15.0),
]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder as a sweep leaves it before compaction: one samples part per trial."""
    root = tmp_path_factory.mktemp("parts")
    return Path(write_sweep(root / "results", TRIALS, interval_s=0.5).path)


def compacted_copy(parts: Path, tmp_path: Path, table: str) -> tuple[Path, Path]:
    """(a compacted copy of ``parts`` in tmp_path, the one compacted file of ``table``)."""
    folder = tmp_path / "results"
    shutil.copytree(parts, folder)
    compact_results(folder)
    (compacted,) = (folder / table).glob("compact-*.parquet")
    return folder, compacted


def truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def parts_of(folder: Path, trial_id: str) -> list[Path]:
    """The samples parts holding rows of ``trial_id`` (the synthetic writer gives each
    trial its own parts)."""
    return [
        part
        for part in sorted((folder / "samples").glob("part-*.parquet"))
        if trial_id in pq.read_table(part, columns=["trial_id"])["trial_id"].to_pylist()
    ]


def test_truncated_sample_parts_are_skipped_and_named_and_the_other_trials_are_analysed(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a results folder whose samples parts of one trial were truncated by a copy
    folder = tmp_path / "results"
    shutil.copytree(parts, folder)
    damaged = parts_of(folder, "t1")
    assert damaged
    for part in damaged:
        truncate(part)
    # WHEN it is analysed
    capsys.readouterr()
    code = main(["analyze", str(folder), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    # THEN the analysis runs (exit 0)
    assert code == 0, out
    # AND says which files were skipped, why, and the fix; and which trial they took
    notes = [
        f"samples/{part.name} cannot be read (Parquet magic bytes not found in footer. Either "
        "the file is corrupted or this is not a parquet file.): skipped, so the rows only it "
        "holds are not analysed; to include them, restore it from a copy of the results "
        f"folder (committed results: `git checkout -- {part}`)"
        for part in damaged
    ]
    assert f"missing ({len(damaged) + 1}): {notes[0]}; " in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert all(note in report for note in notes)
    assert "trial t1 (terminated) has no memory samples" in report
    # AND the other trials are analysed from their samples, the lost one is not
    trials = {
        t["trial_id"]: t
        for t in json.loads((tmp_path / "out" / "models.json").read_text())["trials"]
    }
    assert set(trials) == {"t0", "t2"}
    assert all(t["duration_s"] > 0 for t in trials.values())


def test_a_truncated_compacted_samples_file_is_one_line_naming_it_and_the_fix(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a compacted folder (every trial's samples in one file) whose samples file was
    # truncated
    folder, damaged = compacted_copy(parts, tmp_path, "samples")
    truncate(damaged, keep=5000)
    # WHEN it is analysed
    capsys.readouterr()
    code = main(["analyze", str(folder), "--out", str(tmp_path / "out")])
    # THEN nothing can be analysed: one line, exit 3, the file and the fix
    assert code == 3
    assert capsys.readouterr().err.strip() == (
        f"memsweep analyze: {folder}: no readable memory samples: samples/{damaged.name} cannot "
        "be read (Parquet magic bytes not found in footer. Either the file is corrupted or this "
        "is not a parquet file.); restore it from a copy of the results folder (committed "
        f"results: `git checkout -- {damaged}`)"
    )


def test_a_truncated_progress_file_leaves_the_memory_analysed_and_says_what_is_lost(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a compacted folder whose progress file (Tune's results) was truncated
    folder, damaged = compacted_copy(parts, tmp_path, "progress")
    truncate(damaged)
    # WHEN it is analysed
    capsys.readouterr()
    code = main(["analyze", str(folder), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    # THEN every trial's memory is analysed, and the loss is said per trial
    assert code == 0
    assert out.startswith(f"synthetic: {len(TRIALS)} trials analysed")
    assert f"progress/{damaged.name} cannot be read" in out
    report = (tmp_path / "out" / "report.md").read_text()
    for trial in TRIALS:
        assert (
            f"trial {trial.trial_id} (terminated) has samples but no Tune results (progress/)"
            in report
        )


def test_a_damaged_compacted_file_whose_parts_were_not_yet_deleted_loses_nothing(
    parts: Path, tmp_path: Path
) -> None:
    # GIVEN a compaction killed between writing its file and deleting the parts it covers,
    # and then the compacted file damaged
    folder = tmp_path / "results"
    shutil.copytree(parts, folder)
    before = open_results(folder).table("samples").num_rows
    kept = tmp_path / "kept"
    shutil.copytree(folder / "samples", kept)
    compact_results(folder)
    for part in kept.iterdir():
        shutil.copy(part, folder / "samples" / part.name)
    (damaged,) = (folder / "samples").glob("compact-*.parquet")
    truncate(damaged)
    # WHEN its readable files are listed
    readable = open_results(folder).readable("samples")
    # THEN the damaged file is skipped and the parts it covered are read instead: every row
    assert [s.path for s in readable.skipped] == [str(damaged)]
    assert open_results(folder).dataset("samples", readable.files).count_rows() == before


def test_a_part_whose_pages_are_damaged_is_found_after_the_scan_fails_and_left_out(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a samples part whose footer reads but whose first pages were overwritten
    # (a property test once found this one ending compare in an internal error)
    folder = tmp_path / "results"
    shutil.copytree(parts, folder)
    damaged = parts_of(folder, "t1")[0]
    data = bytearray(damaged.read_bytes())
    data[8:1500] = b"\xab" * 1492
    damaged.write_bytes(bytes(data))
    assert pq.read_metadata(damaged).num_rows > 0
    # WHEN it is compared with an intact copy
    capsys.readouterr()
    code = main(["compare", str(folder), str(parts)])
    # THEN the comparison runs and a note names the file, why, and the fix
    assert code == 0
    assert (
        f"Note: run A: samples/{damaged.name} cannot be read (Couldn't deserialize thrift: "
        "Variable-length int over 10 bytes.): skipped, so the rows only it holds are not "
        "analysed; to include them, restore it from a copy of the results folder (committed "
        f"results: `git checkout -- {damaged}`)"
    ) in capsys.readouterr().out.splitlines()


def test_a_truncated_trials_table_is_one_line_naming_the_fix(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "results"
    shutil.copytree(parts, folder)
    truncate(folder / "trials.parquet")
    capsys.readouterr()
    assert main(["analyze", str(folder), "--out", str(tmp_path / "out")]) == 3
    path = folder / "trials.parquet"
    assert capsys.readouterr().err.strip() == (
        f"memsweep analyze: {path} is not a readable Parquet file (Parquet magic bytes not "
        "found in footer. Either the file is corrupted or this is not a parquet file.): "
        f"restore it from a copy of the results folder (committed results: `git checkout -- "
        f"{path}`)"
    )


def test_compare_of_a_folder_with_itself_says_so_at_the_top_and_in_a_note(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN one folder named two ways (a relative path and the absolute one with a slash)
    monkeypatch.chdir(parts.parent)
    capsys.readouterr()
    # WHEN it is compared with itself
    assert main(["compare", parts.name, f"{parts}/"]) == 0
    out = capsys.readouterr().out.splitlines()
    # THEN the header and a note say so
    assert out[1] == f"Run B: synthetic ({parts}/) — the same folder as A"
    assert (
        "Note: A and B are the same results folder: every difference is 0 by construction; "
        "give two runs (e.g. before and after an upgrade) to compare them"
    ) in out
    # AND two different folders get no such note
    other = tmp_path / "other"
    shutil.copytree(parts, other)
    assert main(["compare", str(parts), str(other)]) == 0
    assert "same" not in capsys.readouterr().out
