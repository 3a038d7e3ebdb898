"""The command line answers without loading what it does not use.

Every ``memsweep`` call starts a Python; a flag checked or a file refused should not wait
for pyarrow.dataset and pandas (about 0.6 s of imports, measured with ``-X importtime``),
which only reading a results folder needs. :mod:`memsweep.store` loads its names on
first use for that.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import memsweep.store

HEAVY = ("pandas", "pyarrow", "duckdb", "statsmodels", "matplotlib", "ray")
"""Modules a command loads only once it has work for them."""


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    loaded: list[str] = json.loads(out.strip().splitlines()[-1])
    return {name.split(".")[0] for name in loaded}


def test_the_command_line_and_a_refused_file_or_folder_load_no_data_library() -> None:
    # GIVEN the command line's module, and a call that refuses a missing sweep file
    # WHEN each runs in a fresh Python
    imported = _modules_after("import memsweep.cli.main")
    refused = _modules_after(
        "from memsweep.cli.main import main\nassert main(['validate', '/no/such.yaml']) == 2"
    )
    # (and a results folder that is not there, for every command that reads one)
    missing = _modules_after(
        "from memsweep.cli.main import main\n"
        "for argv in (['analyze', '/no/such'], ['analyze', 'predict', '/no/such'],"
        " ['compact', '/no/such'], ['compare', '/no/such', '/no/such'],"
        " ['export-mlflow', '/no/such']):\n"
        "    assert main(argv) == 3, argv"
    )
    # THEN neither loaded a data library
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert not refused & set(HEAVY), sorted(refused & set(HEAVY))
    assert not missing & set(HEAVY), sorted(missing & set(HEAVY))


def test_every_name_of_the_store_resolves_to_its_home_module() -> None:
    # GIVEN the store package's public names, loaded on first use
    homes = memsweep.store._MODULE_OF
    # THEN the list and the map agree, and each name is its home module's object
    assert sorted(memsweep.store.__all__) == sorted(homes)
    for name, module in homes.items():
        home = importlib.import_module(f"memsweep.store.{module}")
        assert getattr(memsweep.store, name) is getattr(home, name), name
    # AND dir() lists each name once, used or not
    listing = dir(memsweep.store)
    assert len(listing) == len(set(listing)) and set(homes) <= set(listing)
    # AND an unknown name is an AttributeError, as for any module
    try:
        memsweep.store.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("memsweep.store.no_such_name resolved")
