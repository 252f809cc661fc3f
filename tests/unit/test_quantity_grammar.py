"""One grammar for memory quantities and durations.

Every string is given to the three places that judge it — the SDK
(``@task(memory=..., timeout=...)``), the pydantic model behind the HTTP API
and the operator, and the generated CRD (its pattern and length, and its CEL
rule worked out with ``kubernetes.utils.parse_quantity``, which reads
quantities as the API server does) — and all three must agree. Where they
accept, the SDK's bytes are Kubernetes' value rounded up to a whole byte.

The same strings were also sent to a real kube-apiserver 1.34.4 with the
generated CRD (server-side dry run): it agreed on every one.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from kubernetes.utils import parse_quantity

from waypost.model import crd
from waypost.model.task import Resources, Timeout
from waypost.sdk import quantity, task

MEMORY_CORPUS = [
    "512Mi", "1Gi", "64Ki", "500M", "1k", "1048576", "1e9", "1E9", "1e+9", "15e-1",
    "1.5Gi", "0.5Ki", ".5Ki", "1.Mi", "1", "0.9", "1.0", "2Pi", "7Ei", "8Ei", "9E", "8E",
    "9223372036854775807", "9223372036854775808", "1e18", "1e19", "1e-3", "1000e-3",
    "1e40", "0", "0Mi", "0e9", "", " 512Mi", "512Mi ", "512MB", "512mi", "128m", "1K",
    "Mi", "-1Gi", "+1Gi", "1 Gi", "1e", "e9", "1.5.5", "1__0", "Infinity", "NaN", "1ki",
    "1" * 64, "1" * 65, "1" * 19 + "Mi", "0x10", "١٢",
]
DURATION_CORPUS = [
    "15m", "1h30m", "90s", "500ms", "2d", "1d", "1.5h", "0.5s", "0s", "0.0s", "0m0s",
    "1m0s", "30m1h", "1h1h", "15", "15x", "", "m", "1h 30m", " 1h", "1H", "1.s", ".5s",
    "1us", "1ns", "1e3s", "-1s", "001s", "9" * 31 + "s", "9" * 32 + "s", "1" + "0" * 30 + "s",
]


@functools.cache
def _task_crd() -> dict[str, Any]:
    return crd.task_crd()


def _crd_schema(path: list[str]) -> dict[str, Any]:
    node = _task_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in ["spec", *path]:
        node = node["properties"][key]
    return node


def _generated(alphabet: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
            for _ in range(count)]


def _memory_by_crd(text: str) -> bool:
    schema = _crd_schema(["resources", "memory"])
    if len(text) > schema["maxLength"] or not re.search(schema["pattern"], text):
        return False
    # The CEL rule, as the API server's quantity library would read it.
    assert schema["x-kubernetes-validations"][0]["rule"] == quantity.MEMORY_RANGE_RULE
    value = parse_quantity(text)
    # The rule says "< 8Ei"; the API server's quantity comparison also refuses
    # 2^63 - 1 (kube-apiserver 1.34.4, measured), so the bound is one lower.
    return bool(1 <= value < 8 * 1024**6 - 1)


def _judge(fn: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        fn(*args, **kwargs)
    except (ValueError, pydantic.ValidationError):
        return False
    return True


MEMORY_STRINGS = MEMORY_CORPUS + _generated("0123456789.eE+-kMGTPEi ", 3000, 9)


@pytest.mark.parametrize("chunk", range(4))
def test_sdk_model_and_crd_accept_the_same_memory_quantities(chunk: int) -> None:
    for text in MEMORY_STRINGS[chunk::4]:
        by_sdk = _judge(quantity.parse_memory_quantity, text)
        by_model = _judge(Resources, memory=text)
        by_crd = _memory_by_crd(text)
        assert by_sdk == by_model == by_crd, (text, by_sdk, by_model, by_crd)
        if by_sdk:
            expected = math.ceil(parse_quantity(text))
            assert quantity.parse_memory_quantity(text) == expected, text


def test_documented_memory_forms_are_accepted_everywhere() -> None:
    @task(id="exponent-memory", memory="1e9")
    def big(ctx: object, payload: object) -> None:
        return None

    assert big.definition.memory_bytes == 1_000_000_000
    assert Resources(memory="1e9").memory == "1e9"
    assert _memory_by_crd("1e9") and not _memory_by_crd("128m")


def _duration_by_crd(text: str) -> bool:
    schema = _crd_schema(["timeout", "maxDuration"])
    if not schema["minLength"] <= len(text) <= schema["maxLength"]:
        return False
    if not re.search(schema["pattern"], text):
        return False
    rule = schema["x-kubernetes-validations"][0]["rule"]
    assert rule == quantity.DURATION_POSITIVE_RULE == "self.matches('[1-9]')"
    return re.search("[1-9]", text) is not None


DURATION_STRINGS = DURATION_CORPUS + _generated("0123456789.smhd ", 3000, 4) + [
    "".join(parts) for parts in itertools.product(["1", "0", "2.5"], ["h", "m", "ms"],
                                                   ["", "30s", "0s"])
]


def test_sdk_model_and_crd_accept_the_same_durations() -> None:
    for text in DURATION_STRINGS:
        by_sdk = _judge(quantity.parse_duration, text)
        by_model = _judge(Timeout, max_duration=text)
        by_crd = _duration_by_crd(text)
        assert by_sdk == by_model == by_crd, (text, by_sdk, by_model, by_crd)


def test_timeout_in_days_and_numbers_reach_the_task() -> None:
    @task(id="daily-timeout", timeout="1d")
    def daily(ctx: object, payload: object) -> None:
        return None

    assert Timeout(max_duration="1d").max_duration == "1d" and _duration_by_crd("1d")
    assert daily.definition.timeout_seconds == 86400.0
    for seconds in (90, 90.5, 1e-05, 0.001, 123456789.25, 3e7):
        text = quantity.format_duration(seconds)
        assert _duration_by_crd(text), text
        assert Decimal(str(quantity.parse_duration(text))) == Decimal(str(float(seconds)))
