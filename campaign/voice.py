"""What a call says: the answer XML the engine serves, rendered per contact, values escaped.

A campaign's content (`--message`, `--play`, `--answer-xml`, `--gather`, …) is a set of
templates with `{column}` placeholders (`{first_name}`, `{appointment|soon}`: a default for an
empty value; `{destination}`: the number called). Rendering fills them from the contact's CSV
fields, and every value goes into the XML escaped (`&`, `<`, `>`, quotes), so that no field can
change the document: `</Speak><Dial>…` is spoken, never obeyed. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape, quoteattr

from defusedxml import ElementTree

# Where the engine serves a campaign's answers and takes the keys pressed (under
# CAMPAIGN_PUBLIC_URL; the campaign id in the query string).
ANSWER_PATH = "/plivo/answer"
DIGITS_PATH = "/plivo/digits"
# {name} or {name|default}; a name is a CSV header (trimmed), so anything but braces and bars.
PLACEHOLDER = re.compile(r"\{([^{}|]+)(?:\|([^{}]*))?\}")
DESTINATION_PLACEHOLDER = "destination"
# The placeholder of an --answer-xml template that becomes the URL keypresses are posted to.
DIGITS_URL_PLACEHOLDER = "digits_url"
ON_MACHINE_CHOICES = ("hangup", "message", "voicemail")
PHONE_KEYS = "0123456789*#"
OPT_OUT = "opt-out"
# The meaning of a key --gather does not name.
INVALID_KEY = "invalid"
_ESCAPE_QUOTES = {'"': "&quot;", "'": "&apos;"}
# Characters XML 1.0 cannot hold (C0 controls but tab, newline and return; surrogates; FFFE/F).
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MARKER = "zq{index}qz"
# How long a voicemail waits for the beep before it speaks anyway.
VOICEMAIL_BEEP_WAIT_S = 60
HANGUP_XML = "<Response><Hangup/></Response>"
EMPTY_XML = "<Response></Response>"


def xml_text(value: str) -> str:
    """`value` fit for XML text or an attribute: escaped, and without the characters XML 1.0
    cannot hold (control characters a spreadsheet leaves in a cell)."""
    return escape(_NOT_XML.sub("", value), _ESCAPE_QUOTES)


class MissingValue(ValueError):
    """A placeholder without a value and without a default."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{{{name}}} has no value")
        self.name = name


@dataclass(frozen=True, slots=True)
class Template:
    """Text with `{column}` placeholders."""

    text: str

    def placeholders(self) -> Iterator[tuple[str, str | None]]:
        """Each placeholder's column name (trimmed) and its default (None: none given)."""
        for match in PLACEHOLDER.finditer(self.text):
            yield match.group(1).strip(), match.group(2)

    def render(self, values: Mapping[str, str], *, markup: bool = False) -> str:
        """XML text: each placeholder replaced by its value (its default when the value is
        empty; MissingValue when neither is), every value escaped. The template's own text is
        escaped too, unless it is `markup` (an --answer-xml document): a message's `&` or `<`
        is spoken, not read as XML."""
        parts: list[str] = []
        at = 0
        for match in PLACEHOLDER.finditer(self.text):
            literal = self.text[at : match.start()]
            parts.append(literal if markup else xml_text(literal))
            name, default = match.group(1).strip(), match.group(2)
            value = values.get(name, "")
            if not value.strip():
                if default is None:
                    raise MissingValue(name)
                value = default
            parts.append(xml_text(value))
            at = match.end()
        rest = self.text[at:]
        parts.append(rest if markup else xml_text(rest))
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class VoiceContent:
    """A campaign's content, as stored on it (campaigns: message, voice, language, …)."""

    message: str | None = None
    voice: str | None = None
    language: str | None = None
    play_url: str | None = None
    play_after_url: str | None = None
    answer_template: str | None = None
    # Keypresses: digit → meaning, the prompt, and what is said after each digit.
    gather: Mapping[str, str] = field(default_factory=dict)
    gather_prompt: str | None = None
    gather_timeout_s: int | None = None
    gather_retries: int | None = None
    after_keypress: Mapping[str, str] = field(default_factory=dict)
    on_machine: str | None = None
    voicemail_message: str | None = None

    @property
    def serves_answer(self) -> bool:
        """Whether the engine serves the call's answer XML."""
        return bool(self.message or self.play_url or self.play_after_url or self.answer_template)

    def templates(self) -> Iterator[tuple[str, Template]]:
        """Every template with the option it came from (for checks at load)."""
        for option, text in (
            ("--message", self.message),
            ("--answer-xml", self.answer_template),
            ("--gather-prompt", self.gather_prompt),
            ("--voicemail-message", self.voicemail_message),
        ):
            if text:
                yield option, Template(text)
        for digit, text in self.after_keypress.items():
            yield f"--after {digit}", Template(text)

    def columns_needed(self) -> dict[str, bool]:
        """Each column the templates read, and whether every use of it has a default."""
        needed: dict[str, bool] = {}
        for _option, template in self.templates():
            for name, default in template.placeholders():
                if name in (DESTINATION_PLACEHOLDER, DIGITS_URL_PLACEHOLDER):
                    continue
                needed[name] = needed.get(name, True) and default is not None
        return needed

    # --- the XML -------------------------------------------------------------------------------

    def answer_xml(self, values: Mapping[str, str], *, digits_url: str, machine: bool) -> str:
        """The answer for one contact (`values`: its fields and destination). `machine`: Plivo
        said an answering machine took the call. Raises MissingValue."""
        if machine and self.on_machine == "hangup":
            return HANGUP_XML
        if machine and self.on_machine == "voicemail":
            text = Template(self.voicemail_message or self.message or "").render(values)
            return (
                f'<Response><Wait length="{VOICEMAIL_BEEP_WAIT_S}" beep="true"/>'
                f"{self._speak(text)}</Response>"
            )
        if self.answer_template is not None:
            filled = dict(values)
            filled[DIGITS_URL_PLACEHOLDER] = digits_url
            return Template(self.answer_template).render(filled, markup=True)
        content = self._content(values)
        if self.gather and not machine:
            prompt = (
                self._speak(Template(self.gather_prompt).render(values))
                if self.gather_prompt
                else ""
            )
            inner = prompt or content
            outer = content if prompt else ""
            return f"<Response>{outer}{self._get_digits(inner, digits_url)}</Response>"
        return f"<Response>{content}</Response>"

    def after_keypress_xml(self, digit: str, values: Mapping[str, str]) -> str:
        """What is said after `digit` was pressed (then the call ends)."""
        text = self.after_keypress.get(digit)
        if not text:
            return EMPTY_XML
        return f"<Response>{self._speak(Template(text).render(values))}</Response>"

    def _content(self, values: Mapping[str, str]) -> str:
        parts = []
        if self.play_url:
            parts.append(f"<Play>{xml_text(self.play_url)}</Play>")
        if self.message:
            parts.append(self._speak(Template(self.message).render(values)))
        if self.play_after_url:
            parts.append(f"<Play>{xml_text(self.play_after_url)}</Play>")
        return "".join(parts)

    def _speak(self, escaped_text: str) -> str:
        attributes = ""
        if self.voice:
            attributes += f" voice={quoteattr(self.voice)}"
        if self.language:
            attributes += f" language={quoteattr(self.language)}"
        return f"<Speak{attributes}>{escaped_text}</Speak>"

    def _get_digits(self, inner: str, digits_url: str) -> str:
        attributes = (
            f' action={quoteattr(digits_url)} method="POST" numDigits="1"'
            f" validDigits={quoteattr(''.join(sorted(self.gather)))}"
        )
        if self.gather_timeout_s is not None:
            attributes += f' timeout="{self.gather_timeout_s}"'
        if self.gather_retries is not None:
            attributes += f' retries="{self.gather_retries}"'
        return f"<GetDigits{attributes}>{inner}</GetDigits>"


def check_answer_template(text: str) -> str | None:
    """Why an --answer-xml template is no Plivo XML (not well-formed, not a <Response>), or
    None. Each placeholder is filled with a marker of its own first, and must stand in element
    text or an attribute's value, where an escaped value stays text: never in a tag or
    attribute name, a comment or a processing instruction, where a value could become markup."""
    markers: list[tuple[str, str]] = []

    def mark(match: re.Match[str]) -> str:
        markers.append((_MARKER.format(index=len(markers)), match.group(0)))
        return markers[-1][0]

    sample = PLACEHOLDER.sub(mark, text)
    try:
        root = ElementTree.fromstring(sample)
    except ParseError as error:
        return f"not well-formed XML ({error})"
    except ValueError as error:  # defusedxml's refusals (entities, DTDs) are ValueErrors
        return f"refused: {error}"
    if root.tag != "Response":
        return f"the root element is <{root.tag}>, not <Response>"
    seen: list[str] = []
    for element in root.iter():
        seen += [element.text or "", element.tail or "", *element.attrib.values()]
        names = [str(element.tag), *element.attrib]
        for marker, placeholder in markers:
            if any(marker in name for name in names):
                return f"{placeholder} stands in a tag or attribute name; values go in text"
    kept = " ".join(seen)
    for marker, placeholder in markers:
        if marker not in kept:
            return f"{placeholder} stands in a comment or instruction, where it is not spoken"
    return None


def parse_gather(text: str) -> dict[str, str]:
    """`1=confirmed,2=cancelled,9=opt-out` → {digit: meaning}; ValueError says what is wrong."""
    meanings: dict[str, str] = {}
    for part in text.split(","):
        digit, equals, meaning = part.partition("=")
        digit, meaning = digit.strip(), meaning.strip().lower()
        if not equals or len(digit) != 1 or digit not in PHONE_KEYS:
            raise ValueError(f"{part.strip()!r} is not KEY=MEANING with one key of 0-9, * or #")
        if not re.fullmatch(r"[a-z0-9][a-z0-9 _-]{0,49}", meaning):
            raise ValueError(f"{meaning!r}: a meaning is 1 to 50 letters, digits, spaces, - or _")
        if digit in meanings:
            raise ValueError(f"key {digit} is given twice")
        meanings[digit] = meaning
    return meanings


def parse_after(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--after "1=Thank you."` (repeatable) → {digit: text}."""
    after: dict[str, str] = {}
    for item in items:
        digit, equals, text = item.partition("=")
        digit = digit.strip()
        if not equals or len(digit) != 1 or digit not in PHONE_KEYS or not text.strip():
            raise ValueError(f"{item!r} is not KEY=TEXT with one key of 0-9, * or #")
        after[digit] = text.strip()
    return after
