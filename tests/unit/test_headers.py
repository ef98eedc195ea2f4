"""AMQP headers survive the JSON round trip used by the dead-letter store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from outbox.headers import from_jsonable, to_jsonable

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(),
    st.binary(),
    st.datetimes(timezones=st.just(UTC)),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), values, max_size=6))
def test_round_trip_is_lossless(headers: dict[str, object]) -> None:
    assert from_jsonable(to_jsonable(headers)) == headers


def test_typed_values_are_tagged() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    out = to_jsonable({"b": b"\x00\xff", "t": stamp, "d": Decimal("1.50")})
    assert out == {
        "b": {"$bytes": "AP8="},
        "t": {"$datetime": stamp.isoformat()},
        "d": {"$decimal": "1.50"},
    }
