"""Shared fixtures: a real local Ray, a real two-node cluster, results folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from memsweep.testing.raycluster import explicit_auth

# Property tests check results, not timings: no per-example deadline. A first example pays
# the lazy imports of what it calls (statsmodels: one run took 433 ms against the 200 ms
# default and failed as "flaky") and this machine is shared. Built on the profile loaded
# now, so under CI Hypothesis's own "ci" profile (derandomized, no deadline) still holds.
settings.register_profile("memsweep", settings(deadline=None))
settings.load_profile("memsweep")

# Every process the tests start (Ray workers inherit the driver's environment on a
# local cluster) must see these before TensorFlow or RLlib is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
WORKER_ENV = {"env_vars": {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}}


@pytest.fixture
def ray_auth_disabled() -> Iterator[None]:
    """For a test that starts Ray in this process itself (a ``Cluster``, ``ray.init``):
    token auth explicitly off for the test, the variables restored after."""
    with explicit_auth("disabled"):
        yield


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """A real Ray on this machine: 2 CPUs, dashboard on loopback (the state API needs
    it), token auth explicitly off (:func:`explicit_auth`)."""
    import ray

    ray.shutdown()
    with explicit_auth("disabled"):
        context = ray.init(
            # A Ray of our own: never join a cluster another program started with `ray start`.
            address="local",
            num_cpus=2,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            runtime_env=WORKER_ENV,
            log_to_driver=False,
        )
        yield context
        ray.shutdown()


@pytest.fixture
def ray_with_memory() -> Iterator[Callable[[int], object]]:
    """Start a real local Ray (2 CPUs, no dashboard, token auth explicitly off) whose
    node has exactly ``memory`` bytes of Ray's logical ``memory`` resource; call again
    to restart with another size. Shut down after the test."""
    import ray

    def start(memory: int) -> object:
        ray.shutdown()
        return ray.init(
            address="local",
            num_cpus=2,
            _memory=memory,  # ray.init's name for `ray start --memory`
            include_dashboard=False,
            runtime_env=WORKER_ENV,
            log_to_driver=False,
        )

    with explicit_auth("disabled"):
        yield start
        ray.shutdown()


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Credentials of the local S3 server (moto accepts any); set in this process by
:func:`s3_endpoint`, and on a Ray head whose jobs must reach the bucket."""


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on 127.0.0.1 with a bucket ``sweeps``: ``HOST:PORT``.
    pyarrow's S3 filesystem in this process reads the credentials from ``S3_ENV``."""
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in S3_ENV.items():
        os.environ.setdefault(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="sweeps")
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_credentials(s3_endpoint: str) -> dict[str, str]:
    """The environment a process needs to reach :func:`s3_endpoint`'s bucket."""
    return dict(S3_ENV)


@pytest.fixture(scope="session")
def s3_uri(s3_endpoint: str) -> Callable[[str], str]:
    """``s3_uri(path)``: a results location in the ``sweeps`` bucket, as a user writes it."""

    def uri(path: str) -> str:
        return f"s3://sweeps/{path}?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"

    return uri


# -- make test-fast ---------------------------------------------------------------------
# Tests without Ray that still take seconds each: they start a `memsweep` subprocess per
# case (imports of Ray, pandas, statsmodels), kill writers at random moments, or analyse
# whole sweeps. Measured with `pytest -m "not slow" --durations=0` (2026-11-30, 2 cores
# under a load average of ~20 from other test runs): these 37 took 1,751 s of the fast
# set's 1,791 s; the analysis tests added since (coherence, leaks, budget) were measured
# the same way, 4-57 s each. They keep running in `make test` and under `-m "not slow"`; `make
# test-fast` (`-m "not slow and not medium"`) leaves them out.
MEDIUM = frozenset(
    [
        "tests/analyze/test_compare.py::test_a_real_sweep_against_itself_differs_by_nothing",
        "tests/analyze/test_compare.py::test_unmatched_trials_are_listed_not_dropped",
        "tests/analyze/test_compare.py::test_a_planted_difference_is_recovered_within_its_interval",
        "tests/analyze/test_emit_ray.py::test_requests_are_the_upper_bound_plus_the_margin",
        "tests/analyze/test_emit_ray.py::test_emit_on_the_command_line",
        "tests/analyze/test_analyze_models.py::test_every_trial_of_a_complete_sweep_is_analysed_and_reaches_its_plateau",
        "tests/analyze/test_analyze_models.py::test_results_on_a_pyarrow_filesystem_are_read_through_the_dataset",
        "tests/analyze/test_designs.py::test_more_qmc_trials_predict_the_left_out_grid_better",
        "tests/analyze/test_designs.py::test_each_size_is_tried_once_and_one_that_leaves_nothing_out_is_refused",
        "tests/analyze/test_analyze_models.py::test_the_capacity_slope_recovers_bytes_per_transition_within_its_interval",
        "tests/analyze/test_coherence.py::test_with_trials_lost_every_fitted_figure_stays_coherent",
        "tests/analyze/test_coherence.py::test_every_figure_of_a_sweep_is_coherent",
        "tests/analyze/test_coherence.py::test_predictions_anywhere_are_never_negative_nor_below_their_plateau",
        "tests/analyze/test_designs.py::test_qmc_points_are_distinct_grid_trials_and_repeatable",
        "tests/analyze/test_analyze_predict.py::test_the_budget_answer_is_the_largest_capacity_that_fits",
        "tests/analyze/test_analyze_predict.py::test_the_budget_can_be_solved_for_workers",
        "tests/analyze/test_analyze_leaks.py::test_a_planted_leak_in_the_trainable_is_measured_per_hour_and_per_env_step",
        "tests/analyze/test_analyze_leaks.py::test_a_lower_threshold_flags_the_planted_leaks_on_their_roles",
        "tests/analyze/test_designs.py::test_report_says_how_many_trials_reach_the_full_grid_error",
        "tests/analyze/test_designs.py::test_the_half_fraction_is_balanced",
        "tests/analyze/test_heldback.py::test_fitted_on_capacities_a_tenth_of_a_held_back_trial_the_model_predicts_its_plateau",
        "tests/budget/test_budget.py::test_with_exact_evidence_the_answer_is_the_largest_candidate_that_fits",
        "tests/claims/test_claims.py::test_a_folder_without_claim_sweeps_is_one_line",
        "tests/claims/test_claims.py::test_framework_claims_compare_per_process",
        "tests/claims/test_claims.py::test_model_claim_splits_trainable_and_per_runner_cost",
        "tests/claims/test_claims.py::test_replay_claim_recovers_bytes_per_transition_and_depends_on_compression",
        "tests/claims/test_claims.py::test_the_committed_claims_run_has_a_number_and_interval_for_every_claim",
        "tests/claims/test_claims.py::test_the_table_files_say_every_number_with_its_interval",
        "tests/claims/test_claims.py::test_workers_claim_and_the_planted_interaction",
        "tests/cli/test_every_command.py::test_every_command_with_generated_arguments_ends_in_one_line_and_writes_only_where_told",
        "tests/cli/test_analyze_cli.py::test_a_bad_predict_request_gets_one_line_naming_the_problem",
        "tests/cli/test_analyze_cli.py::test_a_folder_that_cannot_be_analysed_gets_one_line_and_exit_3",
        "tests/cli/test_analyze_cli.py::test_a_sweep_on_s3_is_analysed_through_pyarrow_fs",
        "tests/cli/test_analyze_cli.py::test_a_sweep_still_running_is_analysed_as_far_as_it_goes",
        "tests/cli/test_analyze_cli.py::test_a_sweep_whose_buffers_never_fill_reports_per_trial_and_refuses_to_predict",
        "tests/cli/test_analyze_cli.py::test_models_json_holds_every_coefficient_with_its_interval",
        "tests/cli/test_analyze_cli.py::test_predict_prints_totals_per_role_with_intervals_and_warns_on_extrapolation",
        "tests/cli/test_analyze_cli.py::test_predict_with_a_budget_prints_the_largest_capacity_that_fits",
        "tests/cli/test_analyze_cli.py::test_the_report_writes_markdown_html_plots_and_models_json",
        "tests/collect/test_faults.py::test_a_damaged_or_foreign_results_folder_gets_one_line_from_analyze",
        "tests/collect/test_faults.py::test_a_malformed_sweep_file_gets_one_line_and_exit_2_and_runs_nothing",
        "tests/collect/test_faults.py::test_a_read_only_results_disk_stops_the_run_before_ray_with_one_line",
        "tests/collect/test_faults.py::test_a_writer_sigkilled_at_random_moments_leaves_only_complete_files",
        "tests/collect/test_faults.py::test_an_unwritable_results_folder_stops_the_run_before_ray_with_one_line",
        "tests/collect/test_faults.py::test_generated_malformed_inputs_get_one_line_too",
        "tests/collect/test_faults.py::test_wrong_flags_get_one_line_and_a_non_zero_exit",
        "tests/run/test_submit.py::test_an_unreachable_address_is_one_line_with_the_fix",
        "tests/run/test_workloads.py::test_eight_env_runners_at_a_tenth_of_a_cpu_fit_a_two_cpu_machine",
        "tests/spec/test_spec.py::test_validate_prints_the_expanded_trial_list_and_bad_files_exit_non_zero",
        "tests/store/test_compact.py::test_a_kill_after_writing_the_compacted_file_counts_no_row_twice",
        "tests/store/test_compact.py::test_compact_on_a_folder_that_is_not_a_sweep_says_so_in_one_line",
        "tests/store/test_compact.py::test_compactions_sigkilled_at_random_moments_never_lose_or_double_a_row",
        "tests/store/test_compact.py::test_results_on_s3_compact_through_pyarrow_fs",
        "tests/store/test_store.py::test_a_remote_location_not_there_says_whether_its_bucket_is",
        "tests/cli/test_flag_refusals.py::test_a_command_name_as_a_flags_value_is_that_value",
        "tests/analyze/test_growth.py::test_flat_plateaus_of_the_shortest_length_that_decides_are_flagged_at_most_0_13_percent",
        # Measured again on 2026-11-30 (--durations=50 of test-fast, load ~3): 1.8-11 s
        # each, 96 s of its 159 s. Each starts a Python that imports RLlib, Tune or
        # memsweep's CLI, or analyses a whole committed sweep.
        "tests/collect/test_faults.py::test_a_truncated_sample_part_is_skipped_named_and_the_rest_analysed",
        "tests/analyze/test_numbers.py::test_a_factor_of_the_users_own_is_fitted_and_predicted",
        "tests/run/test_your_training.py::test_validate_exits_non_zero_with_that_one_line",
        "tests/analyze/test_default_study.py::test_any_one_lost_trial_still_leaves_every_factor",
        "tests/run/test_placement.py::test_bundles_from_the_spec_equal_rllibs_own",
        "tests/run/test_placement.py::test_without_the_workaround_tunes_callback_telemetry_imports_mlflow",
        "tests/run/test_placement.py::test_a_check_error_from_the_subprocess_is_the_same_one_line",
        "tests/run/test_placement.py::test_tunes_callback_telemetry_does_not_bring_mlflow_into_the_driver",
        "tests/run/test_placement.py::test_a_users_config_resources_come_back_from_the_check_subprocess",
        "tests/run/test_placement.py::test_tunes_tensorboard_logger_does_not_bring_torch_into_the_driver",
        "tests/run/test_placement.py::test_the_default_sweep_is_placed_without_importing_rllib",
        "tests/claims/test_claims.py::test_a_claim_row_comparing_a_process_that_keeps_growing_gives_its_rate",
        "tests/report/test_mlflow_export.py::test_without_mlflow_it_says_what_to_install_in_one_line",
        "tests/collect/test_own_tuner.py::test_importing_memsweep_loads_no_ray_and_names_the_public_api",
        # validate in a subprocess that imports RLlib and builds each env (6-8 s each)
        "tests/run/test_your_training.py::test_validate_refuses_an_env_no_trial_could_build_with_one_line",
        "tests/run/test_your_training.py::test_a_custom_env_that_builds_validates_with_each_env_config_built_once",
        "tests/run/test_your_training.py::test_every_new_key_is_explained",
        # hypothesis over four committed runs' predictions (3-4 s each)
        "tests/analyze/test_coherence.py::test_a_factor_moved_further_beyond_the_measured_range_never_lowers_a_figure",
        "tests/cli/test_analyze_cli.py::test_a_sweep_whose_trials_failed_says_so_first_with_the_first_error",
        "tests/report/test_peaks_agree.py::test_every_per_trial_peak_the_analysis_prints_is_the_store_peak",
        "tests/run/test_your_training.py::test_every_example_sweep_checks_against_rllib",
        "tests/analyze/test_compare.py::test_a_setting_run_fewer_times_in_the_other_run_is_said_to_be_so",
        "tests/cli/test_watch.py::test_watch_refuses_a_cluster_it_cannot_reach_with_one_line",
        "tests/cli/test_watch.py::test_watch_refuses_a_folder_that_already_holds_a_recording",
        "tests/run/test_placement.py::test_tunes_trial_state_encoder_grows_the_driver_by_every_number_unless_worked_around",
        # Measured 2026-12-01 (--durations=25 of test-fast, which had grown to 103 s): the
        # RLlib check's subprocess per refused case (3.3-3.6 s each, ten cases), RLlib
        # imported in this process to build configs (9.8 s), a budget CLI pair (5.0 s);
        # then (3.6-4.3 s each) the user's config function checked in a subprocess, a
        # trainable built from the source the driver shipped.
        "tests/run/test_your_training.py::test_a_config_function_that_cannot_be_used_gets_one_line",
        "tests/run/test_your_training.py::test_a_trial_runs_the_shipped_source_of_a_file_it_does_not_have",
        "tests/run/test_your_training.py::test_what_only_rllib_knows_is_refused_with_one_exact_line",
        "tests/run/test_your_training.py::test_a_users_config_function_gets_the_factor_values_on_top",
        "tests/budget/test_budget.py::test_as_grid_needs_a_budget_search_and_a_budget_search_cannot_resume",
    ]
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "medium: no Ray, but seconds per test (a memsweep subprocess per case, whole-sweep "
        "analyses); make test-fast leaves these out",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path)).relative_to(root).as_posix() if item.path else ""
        name = getattr(item, "originalname", item.name)
        if f"{path}::{name}" in MEDIUM:
            item.add_marker(pytest.mark.medium)
    # `make test` hands whole files to two pytest-xdist workers in this order (with
    # `--no-loadscope-reorder`; by default xdist hands out the files with most tests
    # first, which put the bench smoke test, one test of ~3.5 min, last, to run alone):
    # the files that start Ray first, the bench smoke test first of all, so that the last
    # files handed out are short ones and neither worker ends minutes after the other.
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(
        key=lambda item: (item.path.name != "test_bench_smoke.py", item.path not in slow_files)
    )
