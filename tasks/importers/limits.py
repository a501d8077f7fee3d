"""How much one import may hold: the abuse limits every door (API, admin, commands) applies.

The byte limit (``CHOSEN_IMPORT_MAX_BYTES``, all files of one import together) is checked
before anything is stored; the row limit (``CHOSEN_IMPORT_MAX_ROWS``) while reading, and
crossing it fails the whole import, ``skip_invalid`` or not.
"""

from collections.abc import Iterable

from django.conf import settings

# A Potato config is a page of settings; PyYAML reads about 1 MB a second in pure Python,
# so a bigger one is either a mistake (the data uploaded as the config) or an attack.
MAX_CONFIG_BYTES = 1024 * 1024


def megabytes(size: int) -> str:
    """A size as people read it in the settings: 209715200 → "200 MB" (MiB, like Django's
    filesizeformat), small sizes keep three decimals so a lowered limit still reads right."""
    return f"{round(size / 2**20, 3):g} MB"


class ImportTooLarge(Exception):
    """The files of one import exceed CHOSEN_IMPORT_MAX_BYTES; nothing was stored."""

    def __init__(self, size: int | None, limit: int):
        self.size, self.limit = size, limit
        these = f"; these are {megabytes(size)}" if size is not None else ""
        super().__init__(
            f"The files of one import may total at most {megabytes(limit)} "
            f"(CHOSEN_IMPORT_MAX_BYTES){these}. Split the data into several imports."
        )


def max_bytes() -> int:
    return settings.CHOSEN_IMPORT_MAX_BYTES


def check_total_bytes(sizes: Iterable[int]) -> None:
    """Raise ImportTooLarge when the sizes together exceed the limit."""
    total = sum(sizes)
    if total > max_bytes():
        raise ImportTooLarge(total, max_bytes())


def too_many_rows_message(limit: int) -> str:
    return (
        f"the import holds more than {limit:,} data rows, the limit of one import "
        "(CHOSEN_IMPORT_MAX_ROWS); split the data into several imports"
    )


def config_too_large_message(size: int) -> str:
    return (
        f"the config is {megabytes(size)}; a Potato config may be at most "
        f"{megabytes(MAX_CONFIG_BYTES)} (was a data file uploaded as the config?)"
    )
