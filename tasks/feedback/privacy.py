"""What an import keeps of the people in a log: user ids only as salted hashes, and, when
asked, texts with e-mail addresses, phone numbers and configured patterns replaced.

``pseudonym`` is HMAC-SHA256 keyed with the organization's own random salt
(``Organization.pseudonym_salt``): the same user has the same pseudonym in every import of
one organization (so "one user's thumbs" can still be grouped), a different one in another
organization, and without the salt a pseudonym cannot be matched to a list of known ids by
hashing them (which a plain SHA-256 of an e-mail address or an employee number allows).

``Redactor`` runs before anything is stored. Its phone pattern is deliberately narrower
than "any run of digits": a version number (1.2.3), a date (2024-01-15, 15.01.2024,
01/15/2024), a price ($1,234.56), an IP address or an order number must survive, so a
phone number needs a leading ``+`` (international), an area code in parentheses, the
North-American 3-3-4 grouping with separators, or a national trunk ``0`` followed by
groups (01 23 45 67 89, 020 7946 0958, 030 12345678), and 8 to 15 digits in all.
"""

import hmac
import re
import re._parser as sre_parse  # the standard library's own parser: the tree it compiles
from collections import Counter
from hashlib import sha256

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"
)
# Not inside a longer number, a word, a version or a decimal: no digit, letter, dot, comma,
# slash or hyphen right before; no digit or letter, and no dot or comma followed by a digit,
# right after.
_BEFORE = r"(?<![\w.,/+-])"
_AFTER = r"(?![\w]|[.,/-]\d)"
PHONE = re.compile(
    _BEFORE
    + r"(?:"
    # +44 20 7946 0958, +1 (555) 123-4567
    + r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,5}"
    + r"|\(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,5}"  # (555) 123-4567, (030) 1234 5678
    + r"|\d{3}[.-]\d{3}[.-]\d{4}|\d{3} \d{3} \d{4}"  # 555-123-4567, 555.123.4567
    + r"|0\d{1,4}(?:[ -]?\d{2,8}){1,4}"  # 020 7946 0958, 01 23 45 67 89, 030-12345678
    + r")"
    + _AFTER
)
PHONE_DIGITS = (8, 15)  # E.164 allows 15; fewer than 8 is an extension or a short code

MAX_PATTERNS = 20
MAX_PATTERN_CHARS = 300


def pseudonym(organization, user_id: str) -> str:
    """The organization's stand-in for ``user_id`` (64 hex digits); "" for no id."""
    if user_id is None or str(user_id) == "":
        return ""
    key = organization.pseudonym_salt.encode()
    return hmac.new(key, str(user_id).encode("utf-8", "surrogatepass"), sha256).hexdigest()


class UnsafePattern(ValueError):
    """A configured pattern that is not a valid regular expression, or one whose running
    time could explode on a hostile text."""


def check_pattern(pattern: str) -> re.Pattern:
    """The compiled pattern, or UnsafePattern saying why it is refused.

    Python's ``re`` backtracks and has no time limit, so one text can keep a pattern such
    as ``(a+)+$`` busy for hours. Refused therefore: a repeated group that itself holds an
    unbounded repeat (``(a+)+``, ``(\\w*\\s?)*``) or an alternation (``(a|ab)*``), and
    back-references; together these are the classic forms of catastrophic backtracking.
    """
    if not isinstance(pattern, str) or not pattern:
        raise UnsafePattern("a redaction pattern must be a non-empty regular expression")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise UnsafePattern(f"a redaction pattern may be at most {MAX_PATTERN_CHARS} characters")
    try:
        tree = sre_parse.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UnsafePattern(f"{pattern!r} is not a valid regular expression ({exc})") from None
    if compiled.search("") is not None and compiled.fullmatch("") is not None:
        raise UnsafePattern(f"{pattern!r} matches the empty text; it would redact nothing useful")
    problem = _backtracking_risk(tree)
    if problem:
        raise UnsafePattern(f"{pattern!r} is refused: {problem}; its running time can explode")
    return compiled


_REPEATS = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT)


def _backtracking_risk(tree, repeated: bool = False, unbounded_above: bool = False) -> str | None:
    """Why the parsed pattern ``tree`` may backtrack catastrophically, or None.
    ``repeated``: inside a group repeated more than once; ``unbounded_above``: inside one
    repeated without bound."""
    for op, arg in tree:
        if op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
            return "it uses a back-reference"
        if op == sre_parse.BRANCH and unbounded_above:
            return "a repeated group holds an alternation"
        if op in _REPEATS:
            low, high, body = arg
            unbounded = high == sre_parse.MAXREPEAT or high > 100
            if repeated and unbounded:
                return "a repeated group holds an unbounded repeat"
            found = _backtracking_risk(body, repeated or high > 1, unbounded_above or unbounded)
        elif op == sre_parse.SUBPATTERN:
            found = _backtracking_risk(arg[-1], repeated, unbounded_above)
        elif op == sre_parse.BRANCH:
            found = next(
                (f for b in arg[1] if (f := _backtracking_risk(b, repeated, unbounded_above))),
                None,
            )
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            found = _backtracking_risk(arg[1], repeated, unbounded_above)
        elif op == sre_parse.ATOMIC_GROUP:
            found = _backtracking_risk(arg, repeated, unbounded_above)
        else:
            found = None
        if found:
            return found
    return None


class Redactor:
    """Replaces e-mail addresses with ``[email]``, phone numbers with ``[phone]`` and what
    the configured ``patterns`` match with ``[redacted]``, in that order; ``counts`` says
    how many of each it replaced (keys ``email``, ``phone``, ``pattern``).

    Raises UnsafePattern for a pattern ``check_pattern`` refuses, or more than
    MAX_PATTERNS of them."""

    def __init__(self, patterns=()):
        patterns = list(patterns or ())
        if len(patterns) > MAX_PATTERNS:
            raise UnsafePattern(f"at most {MAX_PATTERNS} redaction patterns")
        self.patterns = [check_pattern(p) for p in patterns]
        self.counts: Counter = Counter()

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if "@" in text:
            text, n = EMAIL.subn("[email]", text)
            self.counts["email"] += n
        if _has_digit_run(text):
            text = PHONE.sub(self._phone, text)
        for pattern in self.patterns:
            text, n = pattern.subn("[redacted]", text)
            self.counts["pattern"] += n
        return text

    def _phone(self, match: re.Match) -> str:
        found = match.group()
        digits = sum(c.isdigit() for c in found)
        if not PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]:
            return found
        self.counts["phone"] += 1
        return "[phone]"

    def as_dict(self) -> dict:
        return {kind: self.counts.get(kind, 0) for kind in ("email", "phone", "pattern")}


_DIGIT_RUN = re.compile(r"\d{2}")


def _has_digit_run(text: str) -> bool:
    """A cheap test that skips the phone pattern on texts that cannot hold a number."""
    return _DIGIT_RUN.search(text) is not None
