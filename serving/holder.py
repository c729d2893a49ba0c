"""The served model and its replacement: loads run in a background thread, swaps are atomic.

Requests read `holder.current` once and keep that model for the whole request, so a swap
never mixes two versions inside one answer, and the old model answers until the new one
is ready. A failed load keeps the old model and records why.

Until a first model has loaded, failed loads are retried with a doubling pause (up to
`retry_max_s`): a server started before any champion exists becomes ready by itself once
one is registered. A reload request cuts the pause short.

Each model loaded is remembered in a small JSON file (`remembered`, in the state folder). A replica
that cannot load `model_uri` and has no model serves the remembered version instead, says so in
`fallback`, and keeps retrying `model_uri`; one that never loaded a model stays unready.
"""

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

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
        remembered: Path | None = None,
    ):
        self.model_uri = model_uri
        self.current: LoadedModel | None = None
        self.state = "idle"
        """idle | loading | failed (the last load failed; `error` says why)."""
        self.error: str | None = None
        """Why the last load failed, in words fit for clients (the log has the details)."""
        self.requested_at: datetime | None = None
        self.fallback: str | None = None
        """Set while the served model is the remembered one because `model_uri` could not be loaded."""
        self._remembered = remembered
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
            if error is not None and self.current is None:
                self._fall_back(error)
            with self._lock:
                if self._again:
                    continue
                if error is None or (self.current is not None and self.fallback is None):
                    self.state, self.error = ("idle", None) if error is None else ("failed", error)
                    self._loading = False
                    return
                self.state, self.error = "failed", error
                self._wake.clear()
            log.info("%s not loaded; retrying in %g s", self.model_uri, pause)
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
        self.current, self.error, self.fallback = model, None, None
        log.info("serving %s version %s from %s", model.name, model.version, model.source_uri)
        self._on_load(model, None)
        self._remember(model)
        return None

    def _remember(self, model: LoadedModel) -> None:
        """Write the loaded version's exact URI aside, then rename: the file is whole or absent."""
        if self._remembered is None:
            return
        try:
            self._remembered.parent.mkdir(parents=True, exist_ok=True)
            partial = self._remembered.with_suffix(".partial")
            remembered = {"model_uri": self.model_uri, "source_uri": model.source_uri, "version": model.version}
            partial.write_text(json.dumps(remembered))
            os.replace(partial, self._remembered)
        except OSError:
            log.exception("could not remember the loaded model in %s", self._remembered)

    def _fall_back(self, error: str) -> None:
        """Serve the last version loaded for the same `model_uri`, when there is one and it still loads."""
        try:
            remembered = json.loads(self._remembered.read_text())
            source_uri = remembered["source_uri"] if remembered["model_uri"] == self.model_uri else None
        except (AttributeError, OSError, ValueError, KeyError, TypeError):
            source_uri = None
        if source_uri is None:
            return  # never loaded one for this URI (or no file to remember it in): stay unready
        try:
            model = self._loader(source_uri)
        except Exception:
            log.exception("the last model loaded, %s, does not load either", source_uri)
            return
        self.current = model
        self.fallback = f"{self.model_uri} could not be loaded ({error}); serving version {model.version}, the last one loaded"
        log.warning("%s", self.fallback)
        self._on_load(model, None)
