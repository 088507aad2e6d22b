"""A fleet named by one string: lists and DNS names expand to replicas; picking is least outstanding."""

from __future__ import annotations

import asyncio

import pytest

from shared.clients.fleet import Fleet, NoReplica, resolve, split_urls, with_path


def test_a_spec_is_a_comma_separated_list() -> None:
    assert split_urls(" http://a:1/ ,http://b:2") == ["http://a:1", "http://b:2"]
    assert with_path("http://a:1,http://b:2", "/v1") == "http://a:1/v1,http://b:2/v1"
    with pytest.raises(ValueError, match="no URL"):
        split_urls(" , ")


def test_a_dns_entry_expands_to_every_address_of_the_name() -> None:
    urls = asyncio.run(resolve("dns+http://localhost:8000/v1,http://other:9"))
    assert "http://127.0.0.1:8000/v1" in urls
    assert urls[-1] == "http://other:9"
    assert all(u.startswith("http://") for u in urls)


def test_picks_the_replica_with_fewest_outstanding_requests_and_skips_benched_ones() -> None:
    async def scenario() -> None:
        fleet = Fleet("http://a,http://b,http://c")
        async with fleet.lease() as first, fleet.lease() as second, fleet.lease() as third:
            assert {first.url, second.url, third.url} == {"http://a", "http://b", "http://c"}
            # everyone has one: a benched replica gets nothing new even when it ties
            fleet.bench(fleet.replicas["http://a"], seconds=60)
            async with fleet.lease() as fourth:
                assert fourth.url != "http://a"
        assert all(r.outstanding == 0 for r in fleet.replicas.values())
        for replica in fleet.replicas.values():
            fleet.bench(replica, seconds=60)
        # all benched: the one back soonest is tried rather than failing outright
        assert (await fleet.pick()).url in fleet.replicas

    asyncio.run(scenario())


def test_a_name_that_resolves_to_nothing_is_no_replica() -> None:
    async def scenario() -> None:
        fleet = Fleet("dns+http://localhost:1")
        fleet.replicas = {}
        fleet._resolved_at = float("-inf")
        await fleet.refresh()
        assert fleet.replicas  # localhost resolves
        fleet.replicas = {}
        fleet._resolved_at = 1e18  # as if resolved just now, to nothing
        with pytest.raises(NoReplica):
            await fleet.pick()

    asyncio.run(scenario())
