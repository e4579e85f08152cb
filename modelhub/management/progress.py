"""What the training commands share: a terminal progress bar of the run in hand."""
import threading

from django.db import OperationalError, connection

from modelhub.models import TrainingRun


def watch_progress(stream, stop: threading.Event) -> threading.Thread:
    """A terminal progress bar of the newest open run, read from the database every half second
    (the run itself trains in the foreground)."""
    from tqdm import tqdm

    def loop():
        bar = tqdm(total=100, file=stream, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {desc}",
                   dynamic_ncols=True)
        try:
            while not stop.is_set():
                try:
                    row = (TrainingRun.objects.filter(status__in=["queued", "running"]).order_by("-pk")
                           .values("progress", "stage").first())
                except OperationalError:  # SQLite busy while the trainer writes: next time
                    row = None
                if row:
                    bar.n = round(row["progress"] * 100, 1)
                    bar.set_description_str((row["stage"] or "")[:40], refresh=False)
                    bar.refresh()
                stop.wait(0.5)
            bar.n = 100
            bar.refresh()
        finally:
            bar.close()
            connection.close()

    thread = threading.Thread(target=loop, name="retrain-progress", daemon=True)
    thread.start()
    return thread
