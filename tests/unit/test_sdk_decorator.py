"""The @task decorator, Retry and Queue validation, quantities and durations."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from waypost import AbortRun, Retry, task
from waypost.model.task import RetrySpec, TaskSpec
from waypost.sdk import decorator
from waypost.sdk.decorator import Queue, Task, registered_tasks
from waypost.sdk.quantity import parse_duration, parse_memory_quantity


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Tasks defined by a test must not leak into other tests' registry."""
    saved = dict(decorator._registry)
    try:
        yield
    finally:
        decorator._registry.clear()
        decorator._registry.update(saved)


# --- Retry -----------------------------------------------------------------


def test_retry_defaults() -> None:
    retry = Retry()
    assert retry.max_attempts == 3
    assert retry.initial_delay == 1.0
    assert retry.factor == 2.0
    assert retry.max_delay == 300.0
    assert retry.jitter == 0.2
    assert retry.retry_on == ("error", "oom", "timeout", "lost", "exit")
    assert retry.oom_memory_multiplier is None
    assert retry.oom_memory_ceiling is None


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"max_attempts": 0}, "Retry.max_attempts", "between 1 and 100"),
        ({"max_attempts": 101}, "Retry.max_attempts", "between 1 and 100"),
        ({"max_attempts": 2.5}, "Retry.max_attempts", "integer"),
        ({"max_attempts": True}, "Retry.max_attempts", "integer"),
        ({"initial_delay": -1}, "Retry.initial_delay", ">= 0"),
        ({"initial_delay": float("nan")}, "Retry.initial_delay", "finite"),
        ({"factor": 0.5}, "Retry.factor", ">= 1"),
        ({"max_delay": 0.5}, "Retry.max_delay", ">= initial_delay"),
        ({"jitter": 1.5}, "Retry.jitter", "between 0 and 1"),
        ({"jitter": -0.1}, "Retry.jitter", "between 0 and 1"),
        ({"retry_on": ("error", "segfault")}, "Retry.retry_on", "'segfault'"),
        ({"retry_on": "error"}, "Retry.retry_on", "sequence"),
        ({"oom_memory_multiplier": 0.9}, "Retry.oom_memory_multiplier", ">= 1"),
        (
            {"oom_memory_multiplier": 2.0, "oom_memory_ceiling": "lots"},
            "Retry.oom_memory_ceiling",
            "not a Kubernetes memory quantity",
        ),
        ({"oom_memory_ceiling": "1Gi"}, "Retry.oom_memory_ceiling", "oom_memory_multiplier"),
    ],
)
def test_retry_validation_names_the_field(
    kwargs: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ValueError) as error:
        Retry(**kwargs)
    assert field in str(error.value)
    assert fragment in str(error.value)


def test_retry_accepts_a_list_and_stays_hashable() -> None:
    retry = Retry(retry_on=["oom", "error", "oom"])  # type: ignore[arg-type]
    assert retry.retry_on == ("oom", "error")
    assert hash(retry) == hash(Retry(retry_on=("oom", "error")))


def test_retry_delays_grow_exponentially_and_are_capped() -> None:
    retry = Retry(max_attempts=10, initial_delay=1.0, factor=2.0, max_delay=5.0, jitter=0.0)
    assert [retry.delay_before(n) for n in range(1, 7)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry.delay_before(10_000) == 5.0  # no overflow


def test_retry_jitter_stays_in_its_band() -> None:
    retry = Retry(initial_delay=10.0, max_delay=100.0, jitter=0.2)
    assert retry.delay_before(2, random_fraction=0.0) == pytest.approx(8.0)
    assert retry.delay_before(2, random_fraction=0.5) == pytest.approx(10.0)
    assert retry.delay_before(2, random_fraction=0.999999) == pytest.approx(12.0, rel=1e-5)


def test_retry_as_dict_uses_resource_keys() -> None:
    retry = Retry(max_attempts=5, oom_memory_multiplier=2.0, oom_memory_ceiling="1Gi")
    assert retry.as_dict() == {
        "maxAttempts": 5,
        "backoff": {"initialSeconds": 1.0, "factor": 2.0, "maxSeconds": 300.0, "jitter": 0.2},
        "retryOn": ["error", "oom", "timeout", "lost", "exit"],
        "oom": {"memoryMultiplier": 2.0, "memoryCeiling": "1Gi"},
    }
    # The Task resource takes it as it is (the drift this once locked in is gone).
    assert RetrySpec.model_validate(retry.as_dict()).oom.memory_multiplier == 2.0


# --- Quantities and durations ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512Mi", 512 * 1024**2),
        ("1Gi", 1024**3),
        ("64Ki", 64 * 1024),
        ("500M", 500_000_000),
        ("1k", 1000),
        ("1048576", 1048576),
        ("1e9", 1_000_000_000),
        ("1.5Gi", int(1.5 * 1024**3)),
        ("0.5Ki", 512),
    ],
)
def test_parse_memory_quantity(text: str, expected: int) -> None:
    assert parse_memory_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "512MB", "Mi", "-1Gi", "1 Gi", "0", "0Mi", "abc"])
def test_parse_memory_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory_quantity(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        (30, 30.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["15", "15x", "", "m", 0, -5, True, "1h 30m"])
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        parse_duration(value)


# --- Queue -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrency": 0}, "Queue.max_concurrency"),
        ({"per_key_concurrency": -1}, "Queue.per_key_concurrency"),
        ({"max_concurrency": 1.5}, "Queue.max_concurrency"),
        ({"name": "  "}, "Queue.name"),
    ],
)
def test_queue_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Queue(**kwargs)


# --- @task -----------------------------------------------------------------


def test_task_records_its_definition() -> None:
    @task(
        id="charge-card",
        retry=Retry(max_attempts=5),
        memory="256Mi",
        timeout="15m",
        queue=Queue(name="payments", max_concurrency=3, per_key_concurrency=1),
    )
    async def charge_card(ctx: Any, payload: Any) -> dict[str, Any]:
        """Charge a card.

        More text.
        """
        return {"ok": True}

    definition = charge_card.definition
    assert isinstance(charge_card, Task)
    assert definition.id == "charge-card"
    assert definition.entrypoint == f"{__name__}:{charge_card.__qualname__}"
    assert definition.entrypoint.endswith(":test_task_records_its_definition.<locals>.charge_card")
    assert definition.retry == Retry(max_attempts=5)
    assert definition.memory == "256Mi"
    assert definition.memory_bytes == 256 * 1024**2
    assert definition.timeout_seconds == 900.0
    assert definition.queue == Queue(name="payments", max_concurrency=3, per_key_concurrency=1)
    assert definition.queue_name == "payments"
    assert definition.is_async is True
    assert definition.description == "Charge a card."
    spec = definition.as_dict(image="registry.example/shop:1")
    assert spec["queue"] == {"name": "payments", "maxConcurrency": 3, "perKeyConcurrency": 1}
    assert spec["resources"] == {"memory": "256Mi"}
    assert spec["timeout"] == {"maxDuration": "900s"}
    assert spec["image"] == "registry.example/shop:1"
    # (A function defined in a test has a <locals> entrypoint no runner could load.)
    parsed = TaskSpec.model_validate({**spec, "entrypoint": "shop.cards:charge_card"})
    assert (parsed.memory_bytes, parsed.timeout_seconds) == (256 * 1024**2, 900.0)


def test_decorated_functions_stay_callable_like_the_original() -> None:
    @task(id="sync-double")
    def double(ctx: Any, payload: int) -> int:
        return payload * 2

    @task(id="async-double")
    async def adouble(ctx: Any, payload: int) -> int:
        return payload * 2

    assert double(None, 21) == 42
    assert asyncio.run(adouble(None, 21)) == 42
    assert double.__name__ == "double"
    assert inspect.iscoroutinefunction(adouble.fn)
    assert double.definition.is_async is False
    assert adouble.definition.is_async is True


def test_bare_decorator_derives_the_id_and_defaults() -> None:
    @task
    def send_welcome_email(ctx: Any, payload: Any) -> None:
        return None

    definition = send_welcome_email.definition
    assert definition.id == "send-welcome-email"
    assert definition.memory == "512Mi"
    assert definition.retry == Retry()
    assert definition.timeout_seconds is None
    assert definition.queue_name == "send-welcome-email"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": "Bad_Id"}, "task id"),
        ({"id": ""}, "task id"),
        ({"id": "x" * 64}, "task id"),
        ({"id": "-leading"}, "task id"),
        ({"memory": "512MB"}, "memory"),
        ({"memory": 512}, "memory"),
        ({"timeout": "forever"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"retry": {"max_attempts": 3}}, "retry"),
        ({"queue": "payments"}, "queue"),
    ],
)
def test_task_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as error:

        @task(**kwargs)
        def broken(ctx: Any, payload: Any) -> None:
            return None

    assert str(error.value).startswith(field)


def test_registry_keeps_import_order_and_warns_on_duplicate_ids() -> None:
    before = {t.definition.id for t in registered_tasks()}

    @task(id="first-task")
    def first(ctx: Any, payload: Any) -> None:
        return None

    @task(id="second-task")
    def second(ctx: Any, payload: Any) -> None:
        return None

    ids = [t.definition.id for t in registered_tasks() if t.definition.id not in before]
    assert ids == ["first-task", "second-task"]

    with pytest.warns(UserWarning, match="already registered"):

        @task(id="first-task")
        def other(ctx: Any, payload: Any) -> None:
            return None

    assert decorator.get_registered_task("first-task") is other


def test_abort_run_is_an_exception() -> None:
    assert issubclass(AbortRun, Exception)
