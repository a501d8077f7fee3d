"""Cells for CSV files that people open in spreadsheets."""

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets
# (OWASP "CSV injection"): such a cell gets a leading apostrophe, which they show as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: str) -> str:
    return "'" + value if value[:1] in FORMULA_PREFIXES else value
