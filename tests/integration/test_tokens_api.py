"""Wait tokens over HTTP against real Postgres: create, complete once (a second
completion is 409 and changes nothing), the webhook callback with the token's own
secret, timeouts (410), unknown tokens (404), oversized data (413), listing."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

from tests.factories import api_only
from waypost.sdk.client import WaypostClient
from waypost.sdk.errors import WaypostAPIError


async def test_complete_once_then_409(database_url: str, db: asyncpg.Pool) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        token = await client.create_token(timeout="1h", idempotency_key="approve-7")
        assert token["status"] == "pending" and token["url"].startswith(app.url)
        again = await client.create_token(idempotency_key="approve-7")
        assert again["id"] == token["id"]
        done = await client.complete_token(token["id"], {"approved": True})
        assert done["status"] == "completed" and done["data"] == {"approved": True}
        with pytest.raises(WaypostAPIError) as second:
            await client.complete_token(token["id"], {"approved": False})
        assert (second.value.status, second.value.code) == (409, "token_already_completed")
        shown = await client.get_token(token["id"])
        assert shown["data"] == {"approved": True} and shown["url"] is None
        listed = await client.list_tokens(status="completed")
        assert [t["id"] for t in listed] == [token["id"]]


async def test_callback_needs_the_tokens_own_secret(database_url: str) -> None:
    async with api_only(database_url, api_token="user-secret") as app, \
            WaypostClient(app.url, "user-secret") as client:
        token = await client.create_token()
        other = await client.create_token()
        wrong = token["url"].rsplit("/", 1)[0] + "/" + other["url"].rsplit("/", 1)[1]
        async with aiohttp.ClientSession() as http:
            async with http.post(wrong, json={"status": "paid"}) as resp:
                assert resp.status == 404
            # No API token needed: the URL's secret is the credential.
            async with http.post(token["url"], json={"status": "paid"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["data"] == {"status": "paid"}
            async with http.post(token["url"], json={"status": "again"}) as resp:
                assert resp.status == 409
            # The user routes still need the API token.
            async with http.post(f"{app.url}/v1/tokens/{other['id']}/complete",
                                 json={"data": 1}) as resp:
                assert resp.status == 401


@pytest.mark.parametrize(("body", "data"), [
    (b"null", None), (b"5", 5), (b'["a", 1]', ["a", 1]), (b'"ok"', "ok"), (b"", None)])
async def test_a_webhook_posts_any_json_value_or_nothing(database_url: str, body: bytes,
                                                         data: object) -> None:
    """The callback's body is the data, whatever JSON value it is (the OpenAPI document
    says so); no body at all completes it with null."""
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        token = await client.create_token()
        headers = {"Content-Type": "application/json"} if body else {}
        async with aiohttp.ClientSession() as http, http.post(
                token["url"], data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["data"] == data
        assert (await client.get_token(token["id"]))["data"] == data
        # A hostile value is still refused, naming where it is.
        other = await client.create_token()
        async with aiohttp.ClientSession() as http, http.post(
                other["url"], data=b'[1, "a\\u0000b"]',
                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
            assert "[1]" in (await resp.json())["error"]["message"]
        assert (await client.get_token(other["id"]))["status"] == "pending"


async def test_timeout_unknown_and_too_large(database_url: str) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        token = await client.create_token(timeout=0.3)
        await asyncio.sleep(0.5)
        assert (await client.get_token(token["id"]))["status"] == "timed_out"
        with pytest.raises(WaypostAPIError) as late:
            await client.complete_token(token["id"], 1)
        assert (late.value.status, late.value.code) == (409, "token_timed_out")
        with pytest.raises(WaypostAPIError) as unknown:
            await client.complete_token("00000000-0000-0000-0000-000000000000", 1)
        assert unknown.value.status == 404
        with pytest.raises(WaypostAPIError) as bad:
            await client.complete_token("not-a-uuid", 1)
        assert bad.value.status == 400 and "token id" in bad.value.message
        fresh = await client.create_token()
        with pytest.raises(WaypostAPIError) as huge:
            await client.complete_token(fresh["id"], "x" * 600_000)
        assert huge.value.status == 413 and "data" in huge.value.message
        assert (await client.get_token(fresh["id"]))["status"] == "pending"
        for timeout in (-1, 0, "forever"):
            async with aiohttp.ClientSession() as http, http.post(
                    f"{app.url}/v1/tokens", json={"timeout": timeout}) as resp:
                assert resp.status == 400
                assert "timeout" in (await resp.json())["error"]["message"]
