"""Waiting with a timeout on the asyncio loop, without Python 3.11's `wait_for` pitfall.

`asyncio.wait_for(event.wait(), t)` swallows a cancellation that arrives while the event is being set (the task
then runs on; gh-86296, fixed in 3.12). `asyncio.timeout` does not, so every timed wait of the supervisor goes
through here.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passed; True if it was set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
