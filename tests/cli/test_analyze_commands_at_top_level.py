"""`memsweep predict …` (a command of `memsweep analyze`) is told where it lives."""

from __future__ import annotations

import pytest

from memsweep.cli.analyze import COMMANDS as ANALYZE_COMMANDS
from memsweep.cli.main import COMMANDS, main


@pytest.mark.parametrize("name", sorted(set(ANALYZE_COMMANDS) - set(COMMANDS)))
def test_an_analyze_command_at_top_level_names_the_command_meant(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a user runs an analyze command without `analyze`
    code = main([name, "results/reference-default", "--replay-capacity", "1000000"])
    # THEN one line names the command to run, with their arguments, and exits 2
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"memsweep: {name} is a command of memsweep analyze: run `memsweep analyze {name} "
        "results/reference-default --replay-capacity 1000000`\n"
    )


def test_a_command_in_both_places_keeps_its_top_level_meaning() -> None:
    # `claims` is both `memsweep claims` (run the claim sweeps) and `memsweep analyze
    # claims` (their table): the top level wins, no hint
    assert "claims" in COMMANDS and "claims" in ANALYZE_COMMANDS
    with pytest.raises(SystemExit) as exited:
        main(["claims", "--help"])
    assert exited.value.code == 0
