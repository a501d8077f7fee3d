"""Charts of the QC dashboard and the leaderboard, drawn on the server as SVG: nothing to
load from anywhere, no script, no inline style (CSP). Every label is escaped."""

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

BAR = "#3b6ea5"


def _svg(width: int, height: int, body: str, title: str) -> SafeString:
    return mark_safe(  # noqa: S308 (every piece of text in body went through escape)
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _kappa_colour(value) -> str:
    """Red below 0.5 (guidelines ambiguous), amber to 0.7, green above (strong)."""
    if value is None:
        return "#e5e7eb"
    if value < 0.5:
        return "#f4a3a3"
    if value < 0.7:
        return "#f6d58e"
    return "#9fd8a8"


def heatmap(labels: list[str], matrix: list[list], title: str = "Cohen's kappa") -> SafeString:
    """Annotator x annotator kappa, each cell coloured by the seed guides' thresholds."""
    return _matrix(labels, matrix, title, _kappa_colour, "{:.2f}", cell=44, margin=170, room=120)


def _matrix(labels, matrix, title, colour, shown_as, *, cell, margin, room) -> SafeString:
    """A square table of coloured cells, row label against column label (slanted above),
    each cell with its value (``shown_as``) and a tooltip; None shows as a dash."""
    size = len(labels)
    parts = []
    for i, label in enumerate(labels):
        y = margin + i * cell + cell / 2 + 4
        parts.append(
            f'<text x="{margin - 6}" y="{y}" text-anchor="end" font-size="11">'
            f"{escape(label)}</text>"
        )
        parts.append(
            f'<text x="{margin + i * cell + cell / 2}" y="{margin - 8}" text-anchor="start" '
            f'font-size="11" transform="rotate(-45 {margin + i * cell + cell / 2} {margin - 8})">'
            f"{escape(label)}</text>"
        )
        for j in range(size):
            value = matrix[i][j]
            x, y0 = margin + j * cell, margin + i * cell
            shown = "–" if value is None else shown_as.format(value)
            parts.append(
                f'<rect x="{x}" y="{y0}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{colour(value)}"><title>{escape(labels[i])} vs '
                f"{escape(labels[j])}: {shown}</title></rect>"
                f'<text x="{x + cell / 2 - 1}" y="{y0 + cell / 2 + 3}" text-anchor="middle" '
                f'font-size="11">{shown}</text>'
            )
    side = margin + size * cell + 10
    return _svg(side + room, side, "".join(parts), title)  # room for the slanted names


def bars(counts: dict, title: str) -> SafeString:
    """Horizontal bars, one per label, with the count and share."""
    total = sum(counts.values()) or 1
    top = max(counts.values(), default=1) or 1
    row, label_width, bar_width = 24, 200, 320
    parts = []
    for i, (label, n) in enumerate(counts.items()):
        y = i * row
        width = max(1, round(bar_width * n / top))
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end" font-size="12">'
            f"{escape(str(label))}</text>"
            f'<rect x="{label_width}" y="{y + 4}" width="{width}" height="{row - 8}" '
            f'fill="{BAR}"></rect>'
            f'<text x="{label_width + width + 6}" y="{y + 16}" font-size="12">'
            f"{n} ({n / total:.0%})</text>"
        )
    height = max(row, row * len(counts))
    return _svg(label_width + bar_width + 90, height, "".join(parts), title)


def timeline(per_day: dict, title: str = "Judgments per day") -> SafeString:
    """Vertical bars, one per day, oldest first."""
    height, bar, gap = 140, 14, 4
    top = max(per_day.values(), default=1) or 1
    parts = []
    for i, (day, n) in enumerate(per_day.items()):
        h = max(1, round((height - 30) * n / top))
        x = 30 + i * (bar + gap)
        parts.append(
            f'<rect x="{x}" y="{height - 20 - h}" width="{bar}" height="{h}" fill="{BAR}">'
            f"<title>{escape(day)}: {n}</title></rect>"
        )
    if per_day:
        first, last = next(iter(per_day)), list(per_day)[-1]
        parts.append(format_html('<text x="30" y="{}" font-size="11">{}</text>', height - 4, first))
    if len(per_day) > 1:
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>',
                30 + len(per_day) * (bar + gap),
                height - 4,
                last,
            )
        )
    width = max(240, 120 + len(per_day) * (bar + gap))
    return _svg(width, height, "".join(parts), title)


def strengths(rows: list[dict], title: str = "Rating with 95% interval") -> SafeString:
    """One row per source: its rating as a dot, its 95% bootstrap interval as a whisker, on
    a common axis (the leaderboard's "rating" / "lower" / "upper")."""
    row, label_width, plot = 26, 260, 420
    low = min((r["lower"] for r in rows), default=900.0)
    high = max((r["upper"] for r in rows), default=1100.0)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return round(label_width + 10 + (value - low) / span * (plot - 20), 1)

    parts = [
        f'<line x1="{x(1000.0)}" y1="0" x2="{x(1000.0)}" y2="{row * len(rows)}" '
        'stroke="#c7ccd4" stroke-dasharray="3 3"></line>'
        if low <= 1000.0 <= high
        else ""
    ]
    for i, r in enumerate(rows):
        y = i * row + row / 2
        label = escape(str(r["source"]))
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 4}" text-anchor="end" font-size="12">'
            f"{label}</text>"
            f'<line class="whisker" x1="{x(r["lower"])}" y1="{y}" x2="{x(r["upper"])}" y2="{y}" '
            f'stroke="{BAR}" stroke-width="2"></line>'
            f'<circle cx="{x(r["rating"])}" cy="{y}" r="5" fill="{BAR}"><title>{label}: '
            f"{r['rating']:.0f} ({r['lower']:.0f} to {r['upper']:.0f})</title></circle>"
            f'<text x="{label_width + plot + 6}" y="{y + 4}" font-size="12">'
            f"{r['rating']:.0f}</text>"
        )
    height = max(row, row * len(rows)) + 18
    parts.append(
        format_html(
            '<text x="{}" y="{}" font-size="11">{}</text>'
            '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>',
            label_width + 10,
            height - 4,
            f"{low:.0f}",
            label_width + plot - 10,
            height - 4,
            f"{high:.0f}",
        )
    )
    return _svg(label_width + plot + 60, height, "".join(parts), title)


def _win_colour(value) -> str:
    """Blue where the row's source wins most battles against the column's, red where it
    loses most, pale near an even split."""
    if value is None:
        return "#e5e7eb"
    if value >= 0.6:
        return "#9cc3e6"
    if value > 0.4:
        return "#eef0f3"
    return "#f4a3a3"


def win_rates(labels: list[str], matrix: list[list], title: str = "Win rate") -> SafeString:
    """The win-rate matrix: row source against column source, ties as half a win."""
    return _matrix(labels, matrix, title, _win_colour, "{:.0%}", cell=48, margin=200, room=140)
