"""The served model and its replacement: loads run in a background thread, swaps are atomic.

Requests read `holder.current` once and keep that model for the whole request, so a swap
never mixes two versions inside one answer, and the old model answers until the new one
is ready. A failed load keeps the old model and records the error.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from serving.model import LoadedModel

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(
        self,
        model_uri: str,
        loader: Callable[[str], LoadedModel],
        on_load: Callable[[LoadedModel | None, str | None], None] = lambda model, error: None,
    ):
        self.model_uri = model_uri
        self.current: LoadedModel | None = None
        self.state = "idle"
        """idle | loading | failed (the last load failed; `error` says why)."""
        self.error: str | None = None
        self.requested_at: datetime | None = None
        self._loader = loader
        self._on_load = on_load
        self._lock = threading.Lock()
        self._again = False

    def reload(self) -> None:
        """Load `model_uri` again in the background.

        A request during a load makes that load run once more when it ends, so the newest
        champion is what ends up served.
        """
        with self._lock:
            self.requested_at = datetime.now(timezone.utc)
            if self.state == "loading":
                self._again = True
                return
            self.state, self.error = "loading", None
        threading.Thread(target=self._load_until_current, name="model-load", daemon=True).start()

    def not_ready_reason(self) -> str:
        if self.state == "failed":
            return f"could not load {self.model_uri}: {self.error}"
        return f"loading {self.model_uri}"

    def _load_until_current(self) -> None:
        while True:
            log.info("loading %s", self.model_uri)
            try:
                model = self._loader(self.model_uri)
            except Exception as error:  # any failure must leave the old model serving
                log.exception("loading %s failed", self.model_uri)
                state, message = "failed", f"{type(error).__name__}: {error}"
                self._on_load(None, message)
            else:
                self.current = model
                state, message = "idle", None
                log.info("serving %s version %s from %s", model.name, model.version, model.source_uri)
                self._on_load(model, None)
            with self._lock:
                if self._again:
                    self._again = False
                    continue
                self.state, self.error = state, message
                return
