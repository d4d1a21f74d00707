"""Feature store data with make: add-data-point and import-data-to-fs, run for real against SQLite
through this checkout's mlapi, and the exact `mlapi features` commands they run."""
from __future__ import annotations

from pathlib import Path

from makefile_helpers import make, ok, real_venv, stand_in_venv  # noqa: F401


def sqlite_rows(path: Path, table: str) -> list[dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return []
            return [dict(row._mapping) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]
    finally:
        engine.dispose()


TRICKY_TEXT = """I was charged "twice" for `order` 42 -- can't log in; echo pwned"""


def test_add_data_point_writes_straight_into_the_store_without_a_source_database(make, real_venv, tmp_path):
    store = tmp_path / "features.db"
    dotenv = tmp_path / "my.env"
    dotenv.write_text(f"FEATURE_STORE_URL=sqlite:///{store}\n")
    first = ok(make("add-data-point", VENV=real_venv, ENV_FILE=dotenv, TEXT=TRICKY_TEXT))
    assert first.out.strip().splitlines()[-1] == "1"
    second = ok(make("add-data-point", VENV=real_venv, ENV_FILE=dotenv, TEXT="-starts with a dash"))
    assert second.out.strip().splitlines()[-1] == "2"
    rows = sqlite_rows(store, "features")
    assert [(row["id"], row["text"]) for row in rows] == [("1", TRICKY_TEXT), ("2", "-starts with a dash")]


def test_add_data_point_then_import_data_to_fs_moves_the_record_into_the_store(make, real_venv, tmp_path):
    source, store = tmp_path / "mlapi.store.database", tmp_path / "features.db"
    settings = {"SOURCE_DB_URL": f"sqlite:///{source}", "FEATURE_STORE_URL": f"sqlite:///{store}"}
    added = ok(make("add-data-point", VENV=real_venv, TEXT="I cannot log in since the update", env=settings))
    assert added.out.strip().splitlines()[-1] == "1"
    assert [(r["id"], r["text"]) for r in sqlite_rows(source, "records")] == [(1, "I cannot log in since the update")]
    assert sqlite_rows(store, "features") == []  # not in the store until it is imported

    imported = ok(make("import-data-to-fs", VENV=real_venv, env=settings))
    assert "synced 1 rows into features" in imported.out
    assert [(str(r["id"]), r["text"]) for r in sqlite_rows(store, "features")] == [
        ("1", "I cannot log in since the update")]


def test_import_data_to_fs_imports_a_file(make, real_venv, tmp_path):
    store = tmp_path / "features.db"
    rows = tmp_path / "my rows.csv"  # a space in the name
    rows.write_text("id,text\n7,refund please\n8,the app crashes\n")
    run = ok(make("import-data-to-fs", VENV=real_venv, FILE=rows, FEATURE_STORE_URL=f"sqlite:///{store}"))
    assert "imported 2 rows into features" in run.out
    assert [(r["id"], r["text"]) for r in sqlite_rows(store, "features")] == [("7", "refund please"),
                                                                              ("8", "the app crashes")]


def test_feature_store_aliases_run_mlapi_features(make, stand_in_venv):
    assert [c["argv"] for c in ok(make("add-data-point", VENV=stand_in_venv, TEXT="hello")).calls] == [
        ["features", "add", "--", "hello"]]
    assert [c["argv"] for c in ok(make("import-data-to-fs", VENV=stand_in_venv, SOURCE_DB_URL="sqlite:///app.db")
                                  ).calls] == [["features", "import"]]
    assert [c["argv"] for c in ok(make("import-data-to-fs", VENV=stand_in_venv, FILE="data/a b.csv")).calls] == [
        ["features", "import", "data/a b.csv"]]

    for empty in ("", "  "):
        missing = make("add-data-point", VENV=stand_in_venv, TEXT=empty)
        assert missing.returncode != 0
        assert 'TEXT is not set: run make add-data-point TEXT="the record\'s text"' in missing.err
        assert missing.calls == []
    # said before a missing virtualenv is created and installed
    fresh = stand_in_venv.parent / "fresh-venv"
    unset = make("add-data-point", VENV=fresh)
    assert unset.returncode != 0 and "TEXT is not set" in unset.err
    assert not fresh.exists()


def test_import_data_to_fs_without_a_file_or_a_source_says_what_to_set(make, stand_in_venv):
    # With the defaults, add-data-point writes straight into the store: an import would do nothing,
    # which used to pass in silence. Now it stops, saying what to give, before installing anything.
    fresh = stand_in_venv.parent / "fresh-venv"
    for venv in (stand_in_venv, fresh):
        run = make("import-data-to-fs", VENV=venv)
        assert run.returncode != 0 and run.calls == []
        assert "nothing to import: give FILE=rows.csv (CSV, Parquet or JSON lines with an id column), " \
               "or set SOURCE_DB_URL" in run.err
    assert not fresh.exists()
