"""Detections that are code or numbers, not personal data, even outside a code span.

Presidio's patterns see only the characters they match. Around a match, code shows: `items[::2]` and `x[1::3]`
are slices that its IPv6 pattern takes for addresses; `v1.2.3.4` and `pkg==1.2.3.4` are versions;
`x = 1234567890`, the digits after `3.` and the netmask 255.255.255.0 are numbers that libphonenumber takes for
phones; `git@github.com:org/repo.git` is an SSH remote. Each rule looks at most `LOOK_BEHIND` characters before a
match (within the text the stream has already sent) and at the characters glued to its end, so streamed and
whole-text masking decide alike.
"""

import ipaddress
import re

#: Characters before a match that the rules may look at (the streaming masker keeps more than this).
LOOK_BEHIND = 16

_VERSION_BEFORE = re.compile(r"(?:\bv|\bversions?:?[ \t]*|\bver\.?[ \t]*|[=<>~!]=[ \t]*|[\^~])\Z", re.IGNORECASE)
_ASSIGNED_BEFORE = re.compile(r"[=(\[{<>*/%][ \t]*\Z")
_SUBSCRIPT_BEFORE = re.compile(r"[\w)\]}'\"]\[\Z")
_GLUED_NUMBER_BEFORE = re.compile(r"\d[.]\Z")
_GLUED_NUMBER_AFTER = re.compile(r"[.]\d")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_REMOTE_PATH_AFTER = re.compile(r":[\w~./-]")
# a hex literal, or a lower-case hash or UUID (letters and digits both; an IBAN is upper-case: DE89370400440532013000)
_HEX_TOKEN = re.compile(r"0[xX][0-9a-fA-F]+|(?=[0-9a-f-]*[a-f])(?=[0-9a-f-]*\d)[0-9a-f]{7,}(?:-[0-9a-f]+)*")
_WORD = re.compile(r"\S+")


def is_code_like(text: str, start: int, end: int, kind: str) -> bool:
    """Whether the detection `text[start:end]` of `kind` is code or a number rather than personal data.

    Args:
        text: the prose around the detection (at least `LOOK_BEHIND` characters before it when there are any).
        start: where the detection starts in `text`.
        end: where it ends.
        kind: its Presidio entity type.
    """
    found = text[start:end]
    before = text[max(0, start - LOOK_BEHIND) : start]
    after = text[end : end + 2]
    if _inside_hex_token(text, start, end):
        return True
    if kind == "IP_ADDRESS":
        return _not_an_address(found, before, after)
    if kind == "PHONE_NUMBER":
        if _DOTTED_QUAD.fullmatch(found) or _glued_to_a_decimal(before, after):
            return True  # a dotted quad is an address (or a netmask), which the IP rule judges
        return found.strip("()").isdigit() and _ASSIGNED_BEFORE.search(before) is not None  # x = 1234567890
    if kind == "EMAIL_ADDRESS":
        return _REMOTE_PATH_AFTER.match(after) is not None  # git@host:path is an SSH remote, not a mailbox
    return False


def plausible_ipv6(candidate: str) -> bool:
    """An IPv6 address a person could be using: it parses, is neither `::1` nor `::`, and is not a slice.

    At least two groups are written out; with only two, one has three or more digits (`fe80::1`, not `a::b`);
    an address written in decimal digits only needs three groups (`x[1::3]` and `a[10::20]` are slices).
    """
    address = _address(candidate)
    if not isinstance(address, ipaddress.IPv6Address) or address.is_loopback or address.is_unspecified:
        return False
    head = candidate.partition("%")[0]  # a zone index (`fe80::1%eth0`) is no group
    groups = [g for g in head.split(":") if g]
    if groups and "." in groups[-1]:
        groups[-1:] = ["ipv4-high", "ipv4-low"]  # `::ffff:192.0.2.1` ends in an IPv4 address: two groups
    if len(groups) < 2 or (len(groups) == 2 and max(map(len, groups)) < 3):
        return False
    return len(groups) >= 3 or not all(c.isdigit() or c == ":" for c in head)


def _not_an_address(found: str, before: str, after: str) -> bool:
    if ":" in found:
        return not plausible_ipv6(found) or _SUBSCRIPT_BEFORE.search(before) is not None
    address = _address(found)
    if address is None or address.is_loopback or address.is_unspecified or address.is_reserved:
        return True  # nobody's address: 127.0.0.1, 0.0.0.0, a netmask such as 255.255.255.0
    return _VERSION_BEFORE.search(before) is not None or _glued_to_a_decimal(before, after)


def _glued_to_a_decimal(before: str, after: str) -> bool:
    """The match continues a dotted number: `3.1415926535`, `1.2.3.4.5`."""
    return _GLUED_NUMBER_BEFORE.search(before) is not None or _GLUED_NUMBER_AFTER.match(after) is not None


def _inside_hex_token(text: str, start: int, end: int) -> bool:
    """The match lies in a hex literal, hash or UUID (`0xdeadbeef`, `3f786850e387`, lower-case only)."""
    lo = max(0, start - 80)
    for word in _WORD.finditer(text, lo, min(len(text), end + 80)):
        if word.start() <= start and end <= word.end():
            return any(
                m.start() <= start - word.start() and end - word.start() <= m.end()
                for m in _HEX_TOKEN.finditer(word.group())
            )
    return False


def _address(candidate: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(candidate.split("%")[0])
    except ValueError:
        return None
