"""Tables that leave the package for other programs (spreadsheets).

Text in our tables can come from image content (OCR, Rekognition's DetectText) or from
file names other people chose, so an image can decide what a cell holds. A cell that
starts with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, LibreOffice and Google
Sheets when the CSV is opened there ("CSV injection"): it can compute, fetch a URL or,
in old setups, run a program. :func:`excel_safe` defuses such cells for spreadsheet use;
by default the package writes every value exactly as found, which is what pandas and R
need.
"""

from __future__ import annotations

#: Characters that make a spreadsheet read a cell as a formula (OWASP's list: tab and
#: carriage return too, because some programs strip them and then read what follows).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def excel_safe(frame):
    """A copy of ``frame`` whose text cells cannot become spreadsheet formulas.

    Every string cell (and column name) starting with one of :data:`FORMULA_STARTS`
    gets a leading ``'``, which spreadsheets show as text and do not evaluate. Numbers
    are left as numbers (a negative confidence stays a number). Returns a new
    :class:`pandas.DataFrame`; ``frame`` is not changed.
    """
    def defuse(value):
        if isinstance(value, str) and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(defuse)
    out.columns = [defuse(c) for c in out.columns]
    return out
