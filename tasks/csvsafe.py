"""Cells for CSV files that people open in spreadsheets."""

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets
# (OWASP "CSV injection"): such a cell gets a leading apostrophe, which they show as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: str) -> str:
    return "'" + value if value[:1] in FORMULA_PREFIXES else value


def spreadsheet_value(value):
    """A cell of any type: text as ``spreadsheet_cell``; a number, a boolean or None as it
    is (csv writes those itself, and none of them is a formula: -0.5 stays a number)."""
    return spreadsheet_cell(value) if isinstance(value, str) else value
