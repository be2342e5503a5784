"""Progress lines for logs and CI: step, loss, steps/s and ETA every N seconds.

On a terminal Keras' own bar (or the pretraining `Progbar`) shows progress; when
stdout is a file or a pipe nothing would appear until an epoch ends, so
fine-tuning (`ProgressCallback`) and pretraining (`ProgressLines`) print one line
every `--progress_seconds` (default 30) instead:

    step 120/800 (15%)  loss 0.6412  4.12 steps/s  ETA 2m45s

Example:

>>> clock = iter([0.0, 1.0, 3.0, 3.0]).__next__
>>> lines = ProgressLines(total_steps=10, every_seconds=2, clock=clock)
>>> lines.due(1)  # the first step (tracing, compilation) starts the clock
False
>>> lines.due(2)
False
>>> lines.due(5)
True
>>> lines.line(5, 0.5)
'step 5/10 (50%)  loss 0.5000  1.33 steps/s  ETA 4s'
"""

import time

DEFAULT_SECONDS = 30.0


def format_duration(seconds):
    """`4s`, `2m45s`, `1h05m`."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLines:
    """When a progress line is due, and what it says.

    Args:
        total_steps: the step the run ends at.
        every_seconds: seconds between lines (0: every step).
        clock: a `time.perf_counter`-like function (tests pass their own).

    The clock starts at the end of the first step seen (`due`), so tracing and
    compilation are not counted. The rate is the window since the previous line;
    the ETA uses the mean rate since the start, so one slow step (a dev
    evaluation) moves it little.
    """

    def __init__(self, total_steps, every_seconds=DEFAULT_SECONDS, clock=time.perf_counter):
        self.total_steps = int(total_steps)
        self.every_seconds = float(every_seconds)
        self._clock = clock
        self._origin = None

    def start(self, step):
        """Starts timing at `step`."""
        now = self._clock()
        self._origin = (int(step), now)
        self._last = (int(step), now)

    def due(self, step):
        """Whether a line is due after `step`: `every_seconds` since the last line
        (the first call only starts the clock)."""
        if self._origin is None:
            self.start(step)
            return False
        return self._clock() - self._last[1] >= self.every_seconds

    def eta(self, step, now=None):
        """`ETA 2m45s` at `step`, from the mean rate since `start` (`ETA -` before any step)."""
        left = self.total_steps - step
        if left <= 0:
            return "ETA 0s"
        if self._origin is None:
            return "ETA -"
        now = self._clock() if now is None else now
        first_step, first_time = self._origin
        if now <= first_time or step <= first_step:
            return "ETA -"
        return f"ETA {format_duration(left * (now - first_time) / (step - first_step))}"

    def mark(self, step, now=None):
        """Restarts the interval at `step` (a line about it was printed)."""
        self._last = (step, self._clock() if now is None else now)

    def line(self, step, loss):
        """The line for `step` (and restarts the interval)."""
        now = self._clock()
        if self._origin is None:
            self.start(step)
        last_step, last_time = self._last
        window = now - last_time
        rate = f"{(step - last_step) / window:.2f}" if window > 0 and step > last_step else "-"
        self.mark(step, now)
        percent = 100 * step / max(1, self.total_steps)
        return (
            f"step {step}/{self.total_steps} ({percent:.0f}%)  loss {loss:.4f}  {rate} steps/s  {self.eta(step, now)}"
        )


def progress_callback(total_steps, steps_per_epoch, every_seconds=DEFAULT_SECONDS, print_fn=print):
    """A Keras callback printing a `ProgressLines` line every `every_seconds` during `fit`.

    Steps count across epochs (`epoch * steps_per_epoch + batch + 1`), so a run
    resumed by `BackupAndRestore` continues its count; the loss is Keras' running
    mean over the epoch so far.
    """
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.lines = ProgressLines(total_steps, every_seconds)
            self._epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            step = self._epoch * steps_per_epoch + batch + 1
            if self.lines.due(step) and logs and "loss" in logs:
                print_fn(self.lines.line(step, float(logs["loss"])), flush=True)

    return ProgressCallback()
