"""A feature table grows with what is written to it, on SQLite, PostgreSQL and MariaDB: a
record, a file or a sync that brings columns the table lacks adds them (nullable, typed from
the values) instead of refusing "unknown columns", and a running server sees them."""
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import sqlalchemy as sa

from mlapi.store import feature_store, ingest, tables
from mlapi.store.database import make_engine, python_type_of
from mlapi.store.feature_store import FeatureStore
from mlapi.store.ingest import ImportRefused, import_rows, read_rows, sync
from conftest import VENV_BIN

IRIS = {"id": "iris-1", "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def mlapi(*args, env):
    result = subprocess.run([str(VENV_BIN / "mlapi"), *args], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def columns_of(url: str, table: str = "features") -> dict[str, type]:
    engine = make_engine(url)
    with engine.connect() as conn:
        columns = {c["name"]: python_type_of(c["type"]) for c in sa.inspect(conn).get_columns(table)}
    engine.dispose()
    return columns


def rows_of(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(sa.text(sql))]
    engine.dispose()
    return rows


def app_database(tmp_path, *statements: str) -> str:
    """The URL of an application's SQLite database (a sync's source) made by `statements`."""
    url = f"sqlite:///{tmp_path}/app.db"
    engine = make_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()
    return url


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_store_of_texts_takes_a_tabular_record(db_url):
    # The README's order: the text example creates the table (id, text, updated_at); the
    # tabular record the Postman collection reads comes later (it was refused: "unknown columns").
    env = {"FEATURE_STORE_URL": db_url, "SOURCE_DB_URL": ""}  # empty is unset: `add` writes the store
    assert mlapi("features", "add", "I was charged twice for my plan", env=env) == "1"
    assert mlapi("features", "add", "--json", json.dumps(IRIS), env=env) == "iris-1"
    assert mlapi("features", "add", "the app crashes", env=env) == "2"  # and texts still fit
    columns = columns_of(db_url)
    assert [columns[c] for c in IRIS if c != "id"] == [float] * 4 and columns["text"] is str
    store = FeatureStore(db_url)
    records = store.lookup(["1", "iris-1", "2"])
    store.engine.dispose()
    assert {k: records["iris-1"][k] for k in IRIS} == IRIS and records["iris-1"]["text"] is None
    assert records["1"]["text"] == "I was charged twice for my plan" and records["1"]["sepal_length"] is None
    assert records["2"]["text"] == "the app crashes"


def test_an_import_adds_the_columns_the_file_brings(db_url, tmp_path):
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_jsonl(tmp_path / "texts.jsonl",
                                                                 [{"id": "1", "text": "refund please"}])))
    frame = pd.DataFrame({"id": ["a", "b"], "age": [30, 41], "score": [0.5, 1.5], "odd: name": ["x", "y"],
                          "text": ["first", None]})
    frame.to_csv(tmp_path / "f.csv", index=False)
    report = import_rows(engine, "features", "id", read_rows(tmp_path / "f.csv"))
    engine.dispose()
    assert report.written == 2 and not report.created_table
    assert report.added_columns == ["age", "score", "odd: name"]  # in the file's order; text was there
    columns = columns_of(db_url)
    assert (columns["age"], columns["score"], columns["odd: name"]) == (int, float, str)
    assert rows_of(db_url, "SELECT id, text, age, score FROM features ORDER BY id") == [
        ("1", "refund please", None, None), ("a", "first", 30, 0.5), ("b", None, 41, 1.5)]


def test_the_cli_says_which_columns_an_import_added(tmp_path):
    env = {"FEATURE_STORE_URL": f"sqlite:///{tmp_path}/fs.db"}
    assert mlapi("features", "add", "a text", env=env) == "1"
    out = mlapi("features", "import", str(write_jsonl(tmp_path / "iris.jsonl", [IRIS])), env=env)
    assert out == "imported 1 rows into features (columns added: sepal_length, sepal_width, petal_length, petal_width)"


def test_a_column_first_seen_late_in_a_file(db_url, tmp_path, monkeypatch):
    # The table grows before the import's transaction, from the file's first chunk (see
    # test_a_reader_is_not_blocked_while_an_import_is_open); a column JSON lines bring only
    # after it is refused on every database, saying how to proceed, and nothing is written.
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_jsonl(tmp_path / "first.jsonl", [{"id": "0", "x": 0.5}])))
    rows = [{"id": "1", "x": 1.5}, {"id": "2", "x": 2.5}, {"id": "3", "x": 3.5, "y": 7}, {"id": "4", "y": 8}]
    late = write_jsonl(tmp_path / "late.jsonl", rows)
    with pytest.raises(ImportRefused) as refused:
        import_rows(engine, "features", "id", read_rows(late))
    assert [line for line, _ in refused.value.report.bad_rows] == [3, 4]
    assert "new columns ['y'] appear only after the file's first 2 rows" in refused.value.report.bad_rows[0][1]
    assert "import a row that has them first" in refused.value.report.bad_rows[0][1]
    assert rows_of(db_url, "SELECT id FROM features") == [("0",)]  # the first chunk rolled back
    # ...and what the message says works: a row with the column first, then the file
    assert import_rows(engine, "features", "id", read_rows(write_jsonl(tmp_path / "y.jsonl", [rows[2]]))) \
        .added_columns == ["y"]
    report = import_rows(engine, "features", "id", read_rows(late))
    engine.dispose()
    assert (report.added_columns, report.written) == ([], 4)
    assert rows_of(db_url, "SELECT id, x, y FROM features ORDER BY id") == [
        ("0", 0.5, None), ("1", 1.5, None), ("2", 2.5, None), ("3", 3.5, 7), ("4", None, 8)]


def test_two_importers_adding_the_same_column_both_succeed(db_url, tmp_path, monkeypatch):
    # Both look at the table before either adds the column (a barrier holds each after its
    # first look), so both try to add it: the second must skip it, not abort its import.
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_jsonl(tmp_path / "a.jsonl", [{"id": "0", "x": 0.5}])))
    barrier, seen, reflect = threading.Barrier(2, timeout=30), threading.local(), tables.reflect

    def reflect_together(conn, name):
        table = reflect(conn, name)
        if not getattr(seen, "once", False):
            seen.once = True
            barrier.wait()
        return table

    monkeypatch.setattr(tables, "reflect", reflect_together)
    monkeypatch.setattr(ingest, "reflect", reflect_together)
    files = [write_jsonl(tmp_path / f"{n}.jsonl", [{"id": n, "x": 1.0, "y": 2}]) for n in ("1", "2")]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda path: import_rows(engine, "features", "id", read_rows(path)), files))
    engine.dispose()
    assert [r.written for r in reports] == [1, 1]
    assert rows_of(db_url, "SELECT id, x, y FROM features ORDER BY id") == [("0", 0.5, None), ("1", 1.0, 2), ("2", 1.0, 2)]


def test_a_reader_is_not_blocked_while_an_import_is_open(postgres_url, monkeypatch):
    # On PostgreSQL an ALTER TABLE locks the table out (reads too) until its transaction ends:
    # inside the import's transaction it would stop every lookup for the whole import.
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    engine = make_engine(postgres_url)
    import_rows(engine, "features", "id", iter([(1, {"id": "0", "x": 0.5})]))
    written, finish = threading.Event(), threading.Event()

    def rows():  # a long import: the new column in its first chunk, then it waits
        yield from [(1, {"id": "1", "x": 1.5, "y": 7}), (2, {"id": "2", "x": 2.5, "y": 8})]
        written.set()  # asked for more: the first chunk is written, the transaction is open
        assert finish.wait(60)
        yield 3, {"id": "3", "x": 3.5, "y": 9}

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(import_rows, engine, "features", "id", rows())
        try:
            assert written.wait(30)
            reader = make_engine(postgres_url)
            with reader.connect() as conn:
                conn.execute(sa.text("SET statement_timeout = '3s'"))  # blocked: an error, not a hang
                assert conn.execute(sa.text("SELECT id, y FROM features")).all() == [("0", None)]
            reader.dispose()
        finally:
            finish.set()
        assert running.result(60).written == 3
    engine.dispose()
    assert rows_of(postgres_url, "SELECT id, y FROM features ORDER BY id") == [("0", None), ("1", 7), ("2", 8), ("3", 9)]


def test_a_source_table_refuses_columns_it_lacks_saying_what_to_do(tmp_path):
    # The application's own table (SOURCE_DB_URL) is not mlapi's to change; the store's is.
    source_url = app_database(tmp_path, "CREATE TABLE tickets (id INTEGER PRIMARY KEY, text TEXT)")
    env = {**os.environ, "SOURCE_DB_URL": source_url, "SOURCE_TABLE": "tickets",
           "FEATURE_STORE_URL": f"sqlite:///{tmp_path}/fs.db"}
    result = subprocess.run([str(VENV_BIN / "mlapi"), "features", "add", "--json", json.dumps({"text": "hi", "age": 3})],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the source table 'tickets' has no column(s) ['age']" in result.stderr
    assert "add them to 'tickets' yourself" in result.stderr and "unset SOURCE_DB_URL" in result.stderr
    assert [c for c in columns_of(source_url, "tickets")] == ["id", "text"]
    assert mlapi("features", "add", "--json", json.dumps({"text": "hi"}), env=env) == "1"  # known columns still go in


def test_data_without_the_id_column_is_refused_saying_what_to_do(tmp_path):
    # A file (or a sync's query) keyed by another column: add the id column, or name its own.
    env = {**os.environ, "FEATURE_STORE_URL": f"sqlite:///{tmp_path}/fs.db"}
    source = write_jsonl(tmp_path / "customers.jsonl", [{"customer_id": "c1", "age": 30}])
    source_url = app_database(tmp_path, "CREATE TABLE customers (customer_id TEXT, age INTEGER)",
                              "INSERT INTO customers VALUES ('c1', 30)")
    said = ("the data has no 'id' column, which holds each record's id: add an 'id' column, or set "
            "FEATURE_ID_COLUMN to the column that holds the ids (the data has customer_id, age)")
    for command, refused in ((["import", str(source)], "import refused"),
                             (["sync", "--from", source_url, "--query", "SELECT * FROM customers"], "sync refused")):
        result = subprocess.run([str(VENV_BIN / "mlapi"), "features", *command], capture_output=True, text=True,
                                env=env, timeout=120)
        assert (result.returncode, result.stderr) == (2, f"{refused}, nothing written: {said}\n"), result.stderr
    assert mlapi("features", "import", str(source), env={"FEATURE_STORE_URL": env["FEATURE_STORE_URL"],
                                                         "FEATURE_ID_COLUMN": "customer_id"}) \
        == "imported 1 rows into features (table created)"


def test_a_refused_import_writes_no_rows_into_the_columns_it_added(db_url, tmp_path):
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "x": 1.5}])))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "b", "z": 2}, {"id": "c", "x": "not a number"}])
    with pytest.raises(ImportRefused):
        import_rows(engine, "features", "id", read_rows(bad))
    engine.dispose()
    assert rows_of(db_url, "SELECT id, x FROM features") == [("a", 1.5)]


def test_a_sync_adds_the_columns_its_query_brings(db_url, tmp_path):
    source_url = app_database(tmp_path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, body TEXT, age INTEGER)",
                              "INSERT INTO customers VALUES (10, 'refund my invoice', 41)")
    store = make_engine(db_url)
    sync(source_url, "SELECT id, body AS text FROM customers", store, "features", "id")
    assert sync(source_url, "SELECT id, body AS text, age FROM customers", store, "features", "id") == (1, False)
    store.dispose()
    assert rows_of(db_url, "SELECT id, text, age FROM features") == [("10", "refund my invoice", 41)]


def test_a_running_server_sees_columns_added_after_it_read_the_table(db_url, tmp_path, make_app, trained):
    frame = trained["diabetes"][2].copy()
    frame.insert(0, "id", [f"p{i}" for i in range(len(frame))])
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_jsonl(tmp_path / "t.jsonl", [{"id": "1", "text": "hello"}])))
    client = make_app(MODELS=f"diabetes={trained['diabetes'][0]}", FEATURE_STORE_URL=db_url).test_client()
    assert client.get("/predict/1").status_code == 422  # the table is read: a text, no features
    frame.to_csv(tmp_path / "tab.csv", index=False)
    import_rows(engine, "features", "id", read_rows(tmp_path / "tab.csv"))
    engine.dispose()
    time.sleep(feature_store.SCHEMA_CHECK_SECONDS + 0.1)  # how soon a running server looks again
    body = client.get("/predict/p3").get_json()
    estimator, features = trained["diabetes"][1], frame.drop(columns="id").iloc[[3]]
    assert body["data"] == features.iloc[0].to_dict()
    assert body["prediction"] == {"value": estimator.predict(features)[0]}
