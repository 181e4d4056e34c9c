"""clusters.eventloop: which loop `hub serve` and `hub sim serve` run on."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import warnings

import anyio
import pytest

from clusters import eventloop
from clusters.errors import ClusterUsageError
from clusters.eventloop import ENV, EventLoopChoiceError, chosen_loop, running_loop


def test_uvloop_is_the_default_where_it_is_installed() -> None:
    # A dependency of the project on Linux: the benchmarks' figures assume it.
    assert importlib.util.find_spec("uvloop") is not None
    assert chosen_loop({}) == "uvloop"
    assert chosen_loop({ENV: "auto"}) == "uvloop"
    assert chosen_loop({ENV: " UVLOOP "}) == "uvloop"
    assert chosen_loop({ENV: "asyncio"}) == "asyncio"


def test_without_uvloop_auto_falls_back_and_an_explicit_choice_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert chosen_loop({}) == "asyncio"
    with pytest.raises(EventLoopChoiceError) as err:
        chosen_loop({ENV: "uvloop"})
    assert "not installed" in str(err.value) and f"{ENV}=asyncio" in str(err.value)


def test_an_unknown_loop_is_a_usage_error_naming_the_variable() -> None:
    with pytest.raises(ClusterUsageError) as err:  # the CLI's exit 2, no traceback
        chosen_loop({ENV: "trio"})
    assert ENV in str(err.value) and "'trio'" in str(err.value)
    assert "uvloop, asyncio or auto" in str(err.value)


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_run_and_anyio_use_the_chosen_loop(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV, name)

    async def which() -> str:
        await asyncio.sleep(0)
        return running_loop()

    assert eventloop.run(which()) == name
    assert anyio.run(which, backend_options=eventloop.anyio_backend_options()) == name


def test_run_with_a_bad_choice_raises_and_leaves_no_unawaited_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "nope")

    async def never() -> None:
        raise AssertionError("must not run")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            eventloop.run(never())
        except EventLoopChoiceError:
            pass  # the traceback goes here, and with it the last reference to the coroutine
        else:
            pytest.fail("HUB_EVENT_LOOP=nope was accepted")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
