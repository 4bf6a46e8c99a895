"""The local SecantusDB is reached without retryable writes (shared/infra.py says why); the URI decides,
so production's real MongoDB keeps the driver's default. And `$in` queries go out in short lists."""

import pytest

from shared.infra import for_local_mongo, local_mongo_uri
from shared.mongo import connect


@pytest.mark.parametrize("uri, expected", [
    ("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017/?retryWrites=false"),
    ("mongodb://db:1/registry", "mongodb://db:1/registry?retryWrites=false"),
    ("mongodb://db:1/?appname=x", "mongodb://db:1/?appname=x&retryWrites=false"),
    ("mongodb://u:p@a:1,b:2/db?replicaSet=rs0", "mongodb://u:p@a:1,b:2/db?replicaSet=rs0&retryWrites=false"),
    ("mongodb://db:1/?retryWrites=true", "mongodb://db:1/?retryWrites=true"),  # a choice made in the URI stays
])
def test_local_options_are_added_to_a_uri_unless_it_chooses(uri, expected):
    assert for_local_mongo(uri) == expected


def test_the_client_follows_the_uri():
    local = connect(local_mongo_uri(1))
    default = connect("mongodb://127.0.0.1:1")
    try:
        assert local.options.retry_writes is False
        assert default.options.retry_writes is True
    finally:
        local.close()
        default.close()


def test_in_lists_splits_ids_into_short_lists_in_order():
    """`$in` lists stay short (SecantusDB matches them in time quadratic in their length), and every id is
    in exactly one list, in the order given."""
    from shared.mongo import IN_LIST, in_lists

    ids = [f"id{n}" for n in range(2 * IN_LIST + 3)]
    parts = list(in_lists(ids))
    assert [len(p) for p in parts] == [IN_LIST, IN_LIST, 3]
    assert [i for part in parts for i in part] == ids
    assert list(in_lists([])) == []
    assert list(in_lists(("a", "b"), size=1)) == [["a"], ["b"]]
