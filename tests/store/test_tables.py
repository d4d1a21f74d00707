"""Rows checked against the feature table before they are written: values converted to the
columns' types, or refused with the reason (the import reports it with the line number)."""
import datetime as dt

import pytest
import sqlalchemy as sa

from mlapi.store.tables import coerce_row, column_type

TABLE = sa.Table("features", sa.MetaData(), sa.Column("id", sa.String(255), primary_key=True),
                 sa.Column("age", sa.BigInteger), sa.Column("score", sa.Double), sa.Column("active", sa.Boolean),
                 sa.Column("seen", sa.DateTime(timezone=True)), sa.Column("city", sa.Text))


def test_values_are_converted_to_the_column_types():
    row = coerce_row(TABLE, "id", {"id": 7, "age": "41", "score": "0.5", "active": "yes",
                                   "seen": "2026-01-02T03:04:05+00:00", "city": None})
    assert row == {"id": "7", "age": 41, "score": 0.5, "active": True,
                   "seen": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "city": None}
    assert coerce_row(TABLE, "id", {"id": "8", "age": 42.0})["age"] == 42


@pytest.mark.parametrize("row,reason", [
    ({"id": "1", "age": 41.5}, "column 'age': 41.5 is not a int"),  # not silently truncated to 41
    ({"id": "1", "age": "forty"}, "column 'age': 'forty' is not a int"),
    ({"id": "1", "score": "nan"}, "column 'score': 'nan' is not a float"),
    ({"id": "1", "active": "maybe"}, "column 'active': 'maybe' is not a bool"),
    ({"id": " ", "age": 1}, "no 'id'"),
    ({"id": "1", "zip": "x"}, "unknown columns ['zip']"),
])
def test_bad_values_are_refused_with_the_reason(row, reason):
    with pytest.raises(ValueError) as refused:
        coerce_row(TABLE, "id", row)
    assert str(refused.value).startswith(reason)


@pytest.mark.parametrize("values,kind", [([1, "2", None], sa.BigInteger), ([1, 2.5], sa.Double),
                                         ([True, None], sa.Boolean), ([1, "x"], sa.Text), ([None], sa.Text)])
def test_column_types_from_sample_values(values, kind):
    assert isinstance(column_type(values), kind)
