"""The chat's broadcast engines behind one interface (`base.Backend`); `engines` picks one by URL."""

from __future__ import annotations

from starlette_ws.backends.base import Backend, BackendError, Event, MessageTooLarge, PublishUncertain

__all__ = ["Backend", "BackendError", "Event", "MessageTooLarge", "PublishUncertain"]
