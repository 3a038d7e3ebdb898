"""A sweep submitted to a real Ray head as a Ray job, with Ray 2.60's token auth on.

The head is a real ``ray start --head`` on loopback (``raycluster.ray_head``); memsweep
runs as the user runs it, ``python -m memsweep submit …``, in a subprocess. The fast
tests at the end check the token lookup and the refusals that need no cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memsweep.errors import ClusterError
from memsweep.run.jobs import find_token, normalize_address, plan_job
from memsweep.store import open_results
from memsweep.testing.raycluster import (
    TINY_SWEEP,
    Head,
    analyze,
    clean_env,
    memsweep,
    ray_head,
    trial_statuses,
    trials_with_progress,
    wait_until,
    write_sweep,
)


@pytest.fixture(scope="module")
def head(s3_credentials: dict[str, str]) -> Iterator[Head]:
    with ray_head(num_cpus=2, env=s3_credentials) as started:
        yield started


@pytest.mark.slow
def test_a_sweep_submitted_with_s3_storage_is_analysed_from_s3(
    head: Head,
    s3_uri: Callable[[str], str],
    s3_credentials: dict[str, str],
    tmp_path: Path,
) -> None:
    # GIVEN shared storage that the head, its trials and this machine all reach
    uri = s3_uri("tiny")
    sweep = write_sweep(tmp_path, storage=uri)
    env = clean_env(RAY_AUTH_TOKEN_PATH=str(head.token_path), **s3_credentials)
    # WHEN the sweep is submitted with the storage set in its file
    done = memsweep("submit", str(sweep), "--address", head.dashboard, "--follow", env=env)
    # THEN memsweep's Parquet and Tune's experiment are both in the bucket
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    results = open_results(uri)
    assert [t["status"] for t in results.table("trials").to_pylist()] == ["terminated"]
    assert results.table("samples", columns=["pid"]).num_rows > 0
    assert results.exists("tune")
    # AND the analysis reads it from there (its report goes to a local folder)
    report = tmp_path / "report"
    analysed = analyze(uri, "--out", str(report), env=env)
    assert analysed.returncode == 0, analysed.stderr
    assert (report / "report.md").is_file()


@pytest.mark.slow
def test_a_stopped_job_resumes_with_submit_resume_without_rerunning_finished_trials(
    head: Head, tmp_path: Path
) -> None:
    # GIVEN a two-trial sweep submitted without --follow
    sweep = write_sweep(
        tmp_path,
        name="stopped",
        factors={**TINY_SWEEP["factors"], "replay_capacity": [1000, 2000]},
        stop={"iterations": 4},
    )
    storage = tmp_path / "results"
    env = clean_env(RAY_AUTH_TOKEN_PATH=str(head.token_path))
    where = ("--address", head.dashboard)
    submitted = memsweep("submit", str(sweep), *where, "--storage", str(storage), env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    # WHEN the user stops the job while the second trial runs
    finished = wait_until(
        lambda: {t for t, s in trial_statuses(storage).items() if s == "terminated"},
        600,
        "no trial finished",
    )
    wait_until(lambda: trials_with_progress(storage) - finished, 300, "trial 2 never ran")
    stopped = memsweep("stop", job_id, *where, env=env)
    assert stopped.returncode == 0 and f"stopping job {job_id}" in stopped.stdout
    wait_until(
        lambda: "STOPPED" in memsweep("status", job_id, *where, env=env).stdout, 60, "not stopped"
    )
    rows_before = _samples_of(storage, finished)
    # AND resumes it with submit --resume
    resumed = memsweep(
        "submit", str(sweep), *where, "--storage", str(storage), "--resume", "--follow", env=env
    )
    # THEN the resumed job succeeds, its id was printed and its logs were streamed
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
    resumed_id = resumed.stdout.splitlines()[0].strip()
    assert resumed_id.startswith("memsweep-stopped-") and resumed_id != job_id
    assert "memsweep: stopped: 2 trials, 0 failed" in resumed.stdout
    assert f"job {resumed_id} SUCCEEDED" in resumed.stderr
    # AND the finished trial kept its attempt and its rows
    results = open_results(storage)
    trials = results.table("trials").to_pylist()
    assert sorted(t["status"] for t in trials) == ["terminated", "terminated"]
    assert _samples_of(storage, finished) == rows_before
    runs = {t["trial_id"]: t["run_id"] for t in trials}
    (other,) = set(runs) - finished
    assert runs[other] not in {runs[t] for t in finished}
    # AND every trial's trainable was sampled
    samples = results.table("samples", columns=["trial_id", "role"])
    sampled = samples.filter(samples["trial_id"].is_valid())
    assert {"trainable"} <= set(sampled["role"].to_pylist())
    assert set(sampled["trial_id"].to_pylist()) == set(runs)
    # AND the status command reports it finished
    status = memsweep("status", resumed_id, *where, env=env)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    # AND the analysis reads the same storage (local, outside the job's working dir) and
    # writes its report there
    analysed = analyze(str(storage), env=env)
    assert analysed.returncode == 0, analysed.stderr
    assert (storage / "analysis" / "report.md").is_file()


def _samples_of(storage: Path, trials: set[str]) -> dict[str, int]:
    samples = open_results(storage).table("samples", columns=["trial_id"])
    counts = Counter(samples["trial_id"].to_pylist())
    return {trial: counts[trial] for trial in trials}


@pytest.mark.slow
def test_a_wrong_token_is_refused_with_a_clear_message_that_does_not_show_it(
    head: Head, tmp_path: Path
) -> None:
    # GIVEN a token that is not the cluster's
    wrong = "0123456789abcdef-not-the-token"
    sweep = write_sweep(tmp_path)
    # WHEN the user submits with it
    done = memsweep(
        "submit", str(sweep), "--address", head.dashboard, "--storage", str(tmp_path / "r"),
        env=clean_env(RAY_AUTH_TOKEN=wrong),
    )  # fmt: skip
    # THEN memsweep exits non-zero with one line naming where the token came from
    assert done.returncode == ClusterError.exit_code
    assert done.stderr.strip().splitlines() == [
        f"memsweep: {head.dashboard} refused the Ray auth token from RAY_AUTH_TOKEN. "
        "Use the head's token (`ray get-auth-token` on the head prints it) via "
        "~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN."
    ]
    # AND the token itself appears nowhere
    assert wrong not in done.stdout + done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_no_token_at_all_says_where_to_put_one(head: Head, tmp_path: Path) -> None:
    # GIVEN a user with no token anywhere (an empty home, no RAY_AUTH_TOKEN*)
    home = tmp_path / "home"
    home.mkdir()
    # WHEN they ask for a job's status
    done = memsweep(
        "status", "some-job", "--address", head.dashboard, env=clean_env(HOME=str(home))
    )
    # THEN the message says the cluster needs a token and where memsweep looks for it
    assert done.returncode == ClusterError.exit_code
    assert "requires a Ray auth token and none was found" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_an_unknown_job_id_is_named_in_the_message(head: Head) -> None:
    env = clean_env(RAY_AUTH_TOKEN_PATH=str(head.token_path))
    for command in ("status", "stop"):
        done = memsweep(command, "memsweep-nope", "--address", head.dashboard, env=env)
        assert done.returncode == ClusterError.exit_code
        assert done.stderr.startswith(f"memsweep: No job memsweep-nope on {head.dashboard}.")


# -- no cluster needed ----------------------------------------------------------------------


def test_an_unreachable_address_is_one_line_with_the_fix(tmp_path: Path) -> None:
    from memsweep.testing.raycluster import free_port

    sweep = write_sweep(tmp_path, storage=str(tmp_path / "r"))
    address = f"http://127.0.0.1:{free_port()}"
    done = memsweep("submit", str(sweep), "--address", address, env=clean_env())
    assert done.returncode == ClusterError.exit_code
    assert done.stderr.startswith(f"memsweep: Cannot reach the Ray dashboard at {address} (")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_relative_storage_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    # The job's working directory on the head is Ray's, and temporary.
    sweep = write_sweep(tmp_path)
    with pytest.raises(ClusterError, match="storage is the default results/<name>"):
        plan_job(sweep, tmp_path, storage=None, resume=False)
    with pytest.raises(ClusterError, match="storage is 'out'"):
        plan_job(sweep, tmp_path, storage="out", resume=False)


def test_the_job_runs_memsweep_on_the_sweep_file_it_carries(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    uri = "s3://bucket/x?endpoint_override=127.0.0.1:9000&scheme=http"
    plan = plan_job(sweep, staging, storage=uri, resume=True)
    assert plan.entrypoint == f"python -m memsweep run tiny.yaml --storage '{uri}' --resume"
    assert [p.name for p in staging.iterdir()] == ["tiny.yaml"]
    assert plan.runtime_env["working_dir"] == str(staging)
    assert [Path(p).name for p in plan.runtime_env["py_modules"]] == ["memsweep"]
    assert plan.runtime_env["env_vars"]["TF_USE_LEGACY_KERAS"] == "1"
    assert plan.storage == uri


@pytest.mark.parametrize(
    ("variables", "files", "expected"),
    [
        # The same precedence as Ray 2.60's AuthenticationTokenLoader, first line, trimmed.
        ({"RAY_AUTH_TOKEN": " env-token\n"}, {"path": "p", "home": "h"}, ("env-token", "env")),
        (
            {"RAY_AUTH_TOKEN_PATH": "path"},
            {"path": "p-token\nnext", "home": "h"},
            ("p-token", "path"),
        ),
        ({}, {"home": "  home-token  \n"}, ("home-token", "home")),
        ({"RAY_AUTH_TOKEN": ""}, {}, None),
    ],
)
def test_the_token_is_found_where_ray_looks_for_it(
    tmp_path: Path,
    variables: dict[str, str],
    files: dict[str, str],
    expected: tuple[str, str] | None,
) -> None:
    # GIVEN token files and variables ("path" stands for the token file's path)
    paths = {"path": tmp_path / "token", "home": tmp_path / "home" / ".ray" / "auth_token"}
    for key, text in files.items():
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        paths[key].write_text(text)
    environ = {k: str(paths["path"]) if v == "path" else v for k, v in variables.items()}
    # WHEN memsweep looks for the token
    token = find_token(environ, home=tmp_path / "home")
    # THEN it finds the one Ray would use, and names (never shows) it
    if expected is None:
        assert token is None
        return
    value, where = expected
    sources = {
        "env": "RAY_AUTH_TOKEN",
        "path": f"RAY_AUTH_TOKEN_PATH={paths['path']}",
        "home": str(paths["home"]),
    }
    assert token is not None
    assert (token.value, token.source) == (value, sources[where])
    assert value not in repr(token)


def test_a_token_path_to_a_missing_file_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"RAY_AUTH_TOKEN_PATH=.*missing or empty file"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "nope")}, home=tmp_path)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("10.0.0.5:8265", "http://10.0.0.5:8265"), ("https://head:8265/", "https://head:8265")],
)
def test_an_address_without_scheme_is_http(given: str, expected: str) -> None:
    assert normalize_address(given) == expected


@pytest.mark.parametrize("given", [None, "", "ray://head:10001"])
def test_a_missing_or_non_dashboard_address_is_refused(given: str | None) -> None:
    with pytest.raises(ClusterError, match="http://HEAD:8265"):
        normalize_address(given)
