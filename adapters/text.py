"""Attachment bytes to plain text: content types we read, charsets honoured, HTML flattened."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from html.parser import HTMLParser

SUPPORTED_MEDIA_TYPES = frozenset({"text/plain", "text/html", "text/markdown"})

_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "table",
        "ul",
        "ol",
        "pre",
        "blockquote",
        "header",
        "footer",
        "dt",
        "dd",
        "hr",
        "title",
    }
)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "noscript", "template"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class TextSkip(Exception):
    """This attachment cannot be turned into text; ``reason`` is a short stable label for counting."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """``text/plain; charset=ISO-8859-1`` -> (``text/plain``, {``charset``: ``ISO-8859-1``})."""
    if not content_type:
        return "", {}
    head, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for part in rest:
        if "=" in part:
            key, value = part.split("=", 1)
            params[key.strip().lower()] = value.strip().strip('"')
    return head.strip().lower(), params


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise TextSkip("bad-base64") from exc


def _charset(raw: bytes, declared: str | None, media: str) -> str:
    for bom, name in _BOMS:
        if raw.startswith(bom):
            return name
    if declared:
        return declared
    if media == "text/html":
        found = _META_CHARSET.search(raw[:4096])
        if found:
            return found.group(1).decode("ascii")
    return "utf-8"


def to_text(raw: bytes, content_type: str | None) -> str:
    """Decode an attachment to plain text, or raise TextSkip with the reason."""
    media, params = media_type(content_type)
    if media not in SUPPORTED_MEDIA_TYPES:
        raise TextSkip(f"content-type:{media or 'missing'}")
    charset = _charset(raw, params.get("charset"), media)
    try:
        codecs.lookup(charset)
    except LookupError as exc:
        raise TextSkip(f"unknown-charset:{charset.lower()}") from exc
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise TextSkip(f"undecodable:{charset.lower()}") from exc
    text = text.lstrip("\ufeff")
    return html_to_text(text) if media == "text/html" else text


class _Flattener(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag == "pre":
            self._pre += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _BLOCK_TAGS and tag not in ("li", "tr", "dt", "dd"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.parts.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML document, one block per line, entities decoded."""
    parser = _Flattener()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
