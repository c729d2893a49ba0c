"""The served model and its replacement: loads run in a background thread, swaps are atomic.

Requests read `holder.current` once and keep that model for the whole request, so a swap
never mixes two versions inside one answer, and the old model answers until the new one
is ready. A failed load keeps the old model and records why.

Until a first model has loaded, failed loads are retried with a doubling pause (up to
`retry_max_s`): a server started before any champion exists becomes ready by itself once
one is registered. A reload request cuts the pause short.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from serving.model import LoadedModel, load_failure_reason

log = logging.getLogger(__name__)
FIRST_RETRY_S = 1.0


class ModelHolder:
    def __init__(
        self,
        model_uri: str,
        loader: Callable[[str], LoadedModel],
        on_load: Callable[[LoadedModel | None, str | None], None] = lambda model, error: None,
        retry_max_s: float = 30.0,
    ):
        self.model_uri = model_uri
        self.current: LoadedModel | None = None
        self.state = "idle"
        """idle | loading | failed (the last load failed; `error` says why)."""
        self.error: str | None = None
        """Why the last load failed, in words fit for clients (the log has the details)."""
        self.requested_at: datetime | None = None
        self._loader = loader
        self._on_load = on_load
        self._retry_max_s = retry_max_s
        self._lock = threading.Lock()
        self._loading = False
        """A load thread runs (loading, or pausing before a retry)."""
        self._again = False
        self._wake = threading.Event()

    def reload(self) -> None:
        """Load `model_uri` again in the background.

        A request during a load makes that load run once more when it ends (however many
        arrive), so the newest champion is what ends up served.
        """
        with self._lock:
            self.requested_at = datetime.now(timezone.utc)
            if self._loading:
                self._again = True
                self._wake.set()
                return
            self._loading = True
            self.state = "loading"
        threading.Thread(target=self._load_until_current, name="model-load", daemon=True).start()

    def not_ready_reason(self) -> str:
        if self.error:
            return f"could not load the model: {self.error}; retrying"
        return "loading the model"

    def _load_until_current(self) -> None:
        pause = FIRST_RETRY_S
        while True:
            with self._lock:
                self._again = False
                self.state = "loading"
            error = self._load_once()
            with self._lock:
                if self._again:
                    continue
                if error is None or self.current is not None:
                    self.state, self.error = ("idle", None) if error is None else ("failed", error)
                    self._loading = False
                    return
                self.state, self.error = "failed", error
                self._wake.clear()
            log.info("no model loaded yet; retrying in %g s", pause)
            self._wake.wait(pause)
            pause = min(pause * 2, self._retry_max_s)

    def _load_once(self) -> str | None:
        """Load and swap in the model; None, or why it failed (for clients)."""
        log.info("loading %s", self.model_uri)
        try:
            model = self._loader(self.model_uri)
        except Exception as error:  # any failure must leave the old model serving
            log.exception("loading %s failed", self.model_uri)
            reason = load_failure_reason(error)
            self._on_load(None, reason)
            return reason
        self.current = model
        self.error = None
        log.info("serving %s version %s from %s", model.name, model.version, model.source_uri)
        self._on_load(model, None)
        return None
