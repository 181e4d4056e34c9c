"""clusters.eventloop: which loop `hub serve` and `hub sim serve` run on."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
import warnings

import anyio
import pytest

from clusters import eventloop
from clusters.errors import ClusterUsageError
from clusters.eventloop import (
    ENV,
    HUB_DEFAULT,
    SIM_DEFAULT,
    EventLoopChoiceError,
    chosen_loop,
    running_loop,
)


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is a dependency off Windows only")
def test_each_process_has_its_default_and_the_variable_overrides_it() -> None:
    assert importlib.util.find_spec("uvloop") is not None  # the benchmarks' figures assume it
    assert chosen_loop(SIM_DEFAULT, {}) == "uvloop"
    assert chosen_loop(HUB_DEFAULT, {}) == "asyncio"  # TLS buffers (test_memory.py)
    for default in ("uvloop", "asyncio"):
        assert chosen_loop(default, {ENV: "auto"}) == default
        assert chosen_loop(default, {ENV: " UVLOOP "}) == "uvloop"
        assert chosen_loop(default, {ENV: "asyncio"}) == "asyncio"


def test_without_uvloop_auto_falls_back_and_an_explicit_choice_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert chosen_loop(SIM_DEFAULT, {}) == "asyncio"
    with pytest.raises(EventLoopChoiceError) as err:
        chosen_loop(HUB_DEFAULT, {ENV: "uvloop"})
    assert "not installed" in str(err.value) and f"{ENV}=asyncio" in str(err.value)


def test_an_unknown_loop_is_a_usage_error_naming_the_variable() -> None:
    with pytest.raises(ClusterUsageError) as err:  # the CLI's exit 2, no traceback
        chosen_loop(HUB_DEFAULT, {ENV: "trio"})
    assert ENV in str(err.value) and "'trio'" in str(err.value)
    assert "uvloop, asyncio or auto" in str(err.value)


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_run_and_anyio_use_the_chosen_loop(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV, name)

    async def which() -> str:
        await asyncio.sleep(0)
        return running_loop()

    assert eventloop.run(which(), default=HUB_DEFAULT) == name
    options = eventloop.anyio_backend_options(SIM_DEFAULT)
    assert anyio.run(which, backend_options=options) == name


def test_run_with_a_bad_choice_raises_and_leaves_no_unawaited_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "nope")

    async def never() -> None:
        raise AssertionError("must not run")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            eventloop.run(never(), default=SIM_DEFAULT)
        except EventLoopChoiceError:
            pass  # the traceback goes here, and with it the last reference to the coroutine
        else:
            pytest.fail("HUB_EVENT_LOOP=nope was accepted")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
