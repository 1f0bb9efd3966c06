"""How a run ends: once Sacred's last heartbeat is in (or on our own thread when it comes late), the closing records
and the final status, then the journal closed within ``flush_timeout``."""

from __future__ import annotations

import logging
import threading
from typing import Any

import sacred.run

from sacred_gpu import schema
from sacred_gpu.record.sacred_run import ending_run, full_output, heartbeat_thread

logger = logging.getLogger(__name__)


class RunEnd:
    """Part of :class:`~sacred_gpu.record.observer.GpuMongoObserver` (whose ``__init__`` sets the state used here)."""

    def _finish(self, fields: dict[str, Any]) -> None:
        """End the run with ``fields`` (status, stop time, result or fail trace) once Sacred's last heartbeat is in.

        Sacred stops its heartbeat thread but waits only 2 s for its last beat, which carries every point logged since
        the beat before and the output's tail. The training thread waits for that beat at most ``flush_timeout``
        seconds, then for MongoDB at most ``flush_timeout`` seconds; a beat still on its way then is recorded when it
        arrives, and the run's end with it, by a thread of ours that the process waits for (as it waits for Sacred's
        heartbeat thread).
        """
        self._gc.stop()
        if self.recorder is None:
            return
        run = ending_run()
        beat = self._heartbeat_thread(run)
        try:
            if beat is not None:
                beat.join(self.flush_timeout)
            if beat is not None and beat.is_alive():
                logger.warning("sacred-gpu: the last heartbeat of run %s is still on its way after %g s; the run's end "
                               "is recorded as soon as it arrives (the process waits for it)", self.run_id,
                               self.flush_timeout)
                self._finisher = threading.Thread(target=self._finish_after, args=(beat, fields, run),
                                                  name="sacred-gpu-finish")
                self._finisher.start()
                return
            self._record_end(fields, run)
        except KeyboardInterrupt:  # Ctrl-C again while the run ends: record its end without waiting, then stop
            monitor, self.monitor = self.monitor, None
            if monitor is not None:
                monitor.stop_now()
            logger.warning("sacred-gpu: interrupted while ending run %s; its end is journaled without the last "
                           "points (`sacred-gpu sync %s` uploads what MongoDB did not get)", self.run_id,
                           self.recorder.journal.folder.parent)
            self._update_run({**self._last_output(run), **fields})
            self._close(timeout=0.0)
            raise

    def _finish_after(self, beat: threading.Thread, fields: dict[str, Any], run: sacred.run.Run | None) -> None:
        """On our own thread: wait for Sacred's late last beat, then record the run's end."""
        try:
            beat.join()
            self._record_end(fields, run)
        except Exception as exc:  # noqa: BLE001 - nothing to raise to
            self._report_failure("recording the end of the run", exc)

    def _record_end(self, fields: dict[str, Any], run: sacred.run.Run | None = None) -> None:
        """Stop sampling, submit the closing records and the final fields (the output's tail that Sacred's beats did
        not hand over included), and close the run's journal."""
        final = self._final_fields()
        final.update(self._metric_rollups())
        final.update(self._last_output(run))
        final.update(fields)
        with self._lock:
            closing = [rec for series in self._series.values() for rec in series.closing_records(self._next_seq)]
        for rec in closing:
            self._submit_record(rec)
        if self.output_artifact and self._output:
            spooled = self.recorder.journal.spool_text(self._output)  # type: ignore[union-attr]
            self._record_artifact("captured_out.txt", {"spooled": spooled}, "text/plain", None)
        self._update_run(final)
        self._close()

    def _heartbeat_thread(self, run: sacred.run.Run | None) -> threading.Thread | None:
        """Sacred's heartbeat thread of this run, if it may still deliver a beat: the thread our ``log_metrics`` was
        called on, else the ending ``run``'s (a run shorter than one beat interval has had no beat yet)."""
        beat = self._beat_thread or heartbeat_thread(run)
        return beat if isinstance(beat, threading.Thread) and beat is not threading.current_thread() else None

    def _last_output(self, run: sacred.run.Run | None) -> dict[str, Any]:
        """The run field ``captured_out`` with the lines printed since Sacred's last beat (a failed or interrupted
        run's, which no beat hands over: see :mod:`.sacred_run`); nothing when the beats handed all of it."""
        try:
            output = full_output(run)
        except Exception as exc:  # noqa: BLE001 - a user's output filter that raises: the beats' output stays
            self._report_failure("reading the output's last lines", exc)
            return {}
        if output is None:
            return {}
        self._output = self._own_lines.strip(output)
        return {"captured_out": schema.cap_output(self._output, self.output_cap)}

    def _close(self, timeout: float | None = None) -> None:
        """Write what is pending within ``timeout`` (default ``flush_timeout``) seconds; what is left waits in the
        journal for ``sacred-gpu sync``."""
        self._gpus.close()
        recorder, self.recorder = self.recorder, None
        self._own_lines.detach()
        if recorder is None:
            return
        self._ended = True
        if recorder.close(self.flush_timeout if timeout is None else timeout):
            return
        reason = "it is recorded offline" if recorder.offline else f"MongoDB at {self.where} did not take it in time"
        logger.warning("sacred-gpu: run %s is kept in %s (%s); upload it with `sacred-gpu sync %s`",
                       self.run_id, recorder.journal.folder, reason, recorder.journal.folder.parent)
