"""What the import commands share: the consent flag's help, tqdm progress on stderr, the summary."""
from tqdm import tqdm

CONSENT_HELP = (
    "confirm that the collection's terms allow its use for research on this platform; imported photos "
    "are then treated like uploads with consent (and can be exported)"
)


def progress_bars(stream, enabled: bool):
    """tqdm progress bars on stderr (the summary goes to stdout)."""
    def progress(iterable, **kw):
        return tqdm(iterable, file=stream, disable=not enabled, dynamic_ncols=True, **kw)

    return progress


def print_summary(command, summary) -> None:
    lines = summary.lines()
    style = command.style.SUCCESS if not summary.failed else command.style.WARNING
    command.stdout.write(style(lines[0]))
    for line in lines[1:]:
        command.stdout.write(line)
