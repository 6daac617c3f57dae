"""Small asyncio helpers shared by the adapters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a long-lived task and wait until it has really stopped. A task that ends with an
    error instead (a write interrupted mid-way) is logged: a stop must go on to the next part."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception:
            log.exception("task %s failed while stopping", task.get_name())
