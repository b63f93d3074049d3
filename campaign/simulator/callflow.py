"""A call's flow: the Plivo XML its answer_url returns, walked element by element as Plivo plays
it, with what the callee heard and pressed written to the call's `heard` list.

`CallFlow.run` fetches a document (through the `Fetch` it is given, which signs, sends and
records the request), parses it, and walks the children of `<Response>` in order:

- `<Speak>`, `<Play>`, `<Wait>`: heard (the text as the parser decodes it, entities and all;
  the URL; the length, and whether a machine's voicemail made it wait for the beep). No time
  passes: the simulator does not sleep for a `<Wait>` or a prompt.
- `<GetDigits>`: its nested prompt heard, then one keypress drawn (`press`); a key the menu
  takes is sent to `action` with the call's fields and `Digits`, and the document the action
  returns is walked instead of the rest of this one (with `redirect="false"`: sent, and the walk
  goes on here). Without a key the prompt is played again, `retries` attempts in all (Plivo's
  default: 1), then the walk goes on with the next element and no action request is sent.
- `<Redirect>`: the document at its URL is walked instead of the rest of this one.
- `<Hangup/>`: heard, and the walk ends. Anything else: heard as unknown, and the walk goes on.

A document that cannot be fetched (any status but 2xx), is not well-formed, has a root other
than `<Response>`, or has an attribute Plivo would refuse (checked over the whole document before
any of it is played) ends the walk with an error entry; so does passing `MAX_DOCUMENTS_PER_CALL`
documents (a redirect loop) or `MAX_HEARD_PER_CALL` entries. The call itself is not shortened:
it hangs up when its life, computed when it was placed, says so.

The requests for the documents after the answer carry the call's fields and
`CallStatus=in-progress` (plus `Digits` for an action), the standard parameters Plivo's docs list
for XML requests; whether Plivo also sends an `Event` on them is not documented, so none is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from campaign.simulator.config import PHONE_KEYS
from campaign.simulator.ledger import SimulatedCall

# A loop of <Redirect>s or menus must end: Plivo's own limit is not documented.
MAX_DOCUMENTS_PER_CALL = 20
# Bounds a menu with a huge `retries` the same way.
MAX_HEARD_PER_CALL = 1000
# Plivo's documented limit on an XML document its requests are answered with (100 KB).
MAX_DOCUMENT_BYTES = 100 * 1024
# Where each kind of document comes from, as an error entry names it.
DOCUMENT_SOURCES = {"answer": "answer_url", "digits": "GetDigits action", "redirect": "Redirect"}
# Plivo's defaults for what an element leaves out.
DEFAULT_VOICE = "WOMAN"
DEFAULT_LANGUAGE = "en-US"
DEFAULT_FINISH_ON_KEY = "#"


@dataclass(frozen=True, slots=True)
class DocumentRequest:
    """A request for the next document of a call: its kind (`answer`, `digits`, `redirect`, the
    event its ledger row is named by), where it goes, and the parameters it carries."""

    event: str
    url: str
    method: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a document request got: the status and body, or why there was no answer."""

    http_status: int | None
    body: bytes
    error: str | None = None


Fetch = Callable[[DocumentRequest], Awaitable[Fetched]]
# The key the callee presses at one attempt of a menu, or None for no key.
Press = Callable[[], str | None]


class _Stop(Exception):
    """The walk ends here; the message is the error entry's detail."""


class CallFlow:
    """Walks one call's Plivo XML, appending what the callee heard to `call.heard`."""

    def __init__(
        self, call: SimulatedCall, fetch: Fetch, press: Press, common: Mapping[str, str]
    ) -> None:
        self._call = call
        self._fetch = fetch
        self._press = press
        # The call's fields, which every request for a document carries.
        self._common = dict(common)

    async def run(self, first: DocumentRequest) -> None:
        """Fetch and walk `first` and the documents it leads to, until the walk ends."""
        request: DocumentRequest | None = first
        documents = 0
        try:
            while request is not None:
                if documents == MAX_DOCUMENTS_PER_CALL:
                    raise _Stop(
                        f"stopped after {MAX_DOCUMENTS_PER_CALL} documents "
                        f"(a <Redirect> or <GetDigits> action loop?); next was {request.url}"
                    )
                documents += 1
                request = await self._walk(await self._document(request))
        except _Stop as stop:
            self._call.heard.append({"kind": "error", "detail": str(stop)})

    async def _document(self, request: DocumentRequest) -> ElementTree.Element:
        """The `<Response>` element of the document `request` is answered with."""
        source = f"{DOCUMENT_SOURCES.get(request.event, request.event)} {request.url}"
        fetched = await self._fetch(request)
        if fetched.error is not None:
            raise _Stop(f"{source}: {fetched.error}")
        status = fetched.http_status
        if status is None or not 200 <= status < 300:
            raise _Stop(f"{source} answered HTTP {status}, not Plivo XML")
        if len(fetched.body) > MAX_DOCUMENT_BYTES:
            raise _Stop(f"{source}: the document is larger than Plivo's 100 KB")
        try:
            # The document comes from the app under test on loopback (or a host the user
            # allowed); expat resolves no external entities and caps entity expansion.
            root = ElementTree.fromstring(fetched.body)  # noqa: S314
        except ElementTree.ParseError as error:
            raise _Stop(f"{source}: not well-formed XML ({error})") from None
        if root.tag != "Response":
            raise _Stop(f"{source}: the root element is <{root.tag}>, not <Response>")
        try:
            # The whole document first: Plivo plays none of a document it refuses.
            for element in root:
                _check(element, self._call.machine)
        except _Stop as refused:
            raise _Stop(f"{source}: {refused}") from None
        return root

    async def _walk(self, response: ElementTree.Element) -> DocumentRequest | None:
        """Play the elements in order; the next document to walk, or None when the call's XML
        is over (the document ended, or hung up)."""
        machine = self._call.machine
        for element in response:
            tag = element.tag
            if tag == "GetDigits":
                follow = await self._get_digits(_menu(element))
                if follow is not None:
                    return follow
            elif tag == "Redirect":
                url, method = _redirect_target(element)
                parameters = {**self._common, "CallStatus": "in-progress"}
                return DocumentRequest("redirect", url, method, parameters)
            elif tag == "Hangup":
                self._hear({"kind": "hangup"})
                return None
            else:
                self._hear(_prompt_entry(element, machine))
        return None

    async def _get_digits(self, menu: _Menu) -> DocumentRequest | None:
        """Play the menu's prompt and draw a key, `retries` attempts at most; the action's
        document to walk next, or None to go on with the element after the menu."""
        for _ in range(menu.retries):
            for child in menu.prompt:
                self._hear(_prompt_entry(child, self._call.machine))
            key = self._press()
            if key is None:
                self._hear({"kind": "no_digits"})
                continue
            if key == menu.finish_on_key:
                # The key that submits the digits, pressed before any: nothing was entered.
                self._hear({"kind": "no_digits", "pressed": key})
                continue
            if key not in menu.valid_digits:
                self._hear({"kind": "digits", "digits": key, "valid": False})
                if menu.invalid_digits_sound:
                    self._hear({"kind": "play", "url": menu.invalid_digits_sound, "loop": 1})
                continue
            self._hear({"kind": "digits", "digits": key, "valid": True})
            if menu.action is None:
                return None
            request = DocumentRequest(
                "digits",
                menu.action,
                menu.method,
                {**self._common, "CallStatus": "in-progress", "Digits": key},
            )
            if menu.redirect:
                return request
            # redirect="false": the digits are sent, and the call goes on with this document.
            await self._fetch(request)
            return None
        return None

    def _hear(self, entry: dict[str, Any]) -> None:
        if len(self._call.heard) >= MAX_HEARD_PER_CALL:
            raise _Stop(f"stopped after {MAX_HEARD_PER_CALL} entries heard")
        self._call.heard.append(entry)


@dataclass(frozen=True, slots=True)
class _Menu:
    """A `<GetDigits>` as Plivo reads it (its defaults where an attribute is left out)."""

    prompt: tuple[ElementTree.Element, ...]
    action: str | None
    method: str
    retries: int
    valid_digits: str
    finish_on_key: str
    redirect: bool
    invalid_digits_sound: str | None


def _check(element: ElementTree.Element, machine: bool) -> None:
    """Refuse (end the walk) an element whose attributes Plivo would refuse."""
    tag = element.tag
    if tag == "GetDigits":
        for child in _menu(element).prompt:
            _prompt_entry(child, machine)
    elif tag == "Redirect":
        _redirect_target(element)
    elif tag != "Hangup":
        _prompt_entry(element, machine)


def _prompt_entry(element: ElementTree.Element, machine: bool) -> dict[str, Any]:
    """What the callee hears of a `<Speak>`, `<Play>` or `<Wait>` (on its own or in a menu's
    prompt); any other element is heard as unknown."""
    tag = element.tag
    if tag == "Speak":
        return {
            "kind": "speak",
            # All of its text, SSML tags' too, decoded as the parser decodes it.
            "text": "".join(element.itertext()),
            "voice": element.get("voice", DEFAULT_VOICE),
            "language": element.get("language", DEFAULT_LANGUAGE),
            "loop": _whole_number(element, "loop", 1, minimum=0),
        }
    if tag == "Play":
        url = (element.text or "").strip()
        if not url:
            raise _Stop("<Play> has no URL")
        return {"kind": "play", "url": url, "loop": _whole_number(element, "loop", 1, minimum=0)}
    if tag == "Wait":
        beep = _boolean(element, "beep", default=False)
        return {
            "kind": "wait",
            "length": _whole_number(element, "length", 1, minimum=1),
            "beep": beep,
            # A voicemail's greeting ends in a beep: the wait lasts until it.
            "until_beep": beep and machine,
        }
    return {"kind": "unknown", "element": tag}


def _menu(element: ElementTree.Element) -> _Menu:
    action = element.get("action")
    if action is not None and not _is_full_url(action):
        raise _Stop(f"<GetDigits> action must be a full http(s) URL, got {action!r}")
    # Checked as Plivo checks them; no time passes, and one key is pressed, so they change
    # nothing else.
    _whole_number(element, "timeout", 5, minimum=1)
    _whole_number(element, "numDigits", 99, minimum=1)
    finish_on_key = element.get("finishOnKey", DEFAULT_FINISH_ON_KEY)
    return _Menu(
        prompt=tuple(element),
        action=action,
        method=_method(element),
        retries=_whole_number(element, "retries", 1, minimum=1),
        valid_digits=element.get("validDigits", PHONE_KEYS),
        finish_on_key="" if finish_on_key.lower() == "none" else finish_on_key,
        redirect=_boolean(element, "redirect", default=True),
        invalid_digits_sound=element.get("invalidDigitsSound"),
    )


def _redirect_target(element: ElementTree.Element) -> tuple[str, str]:
    """A `<Redirect>`'s URL and method."""
    url = (element.text or "").strip()
    if not _is_full_url(url):
        raise _Stop(f"<Redirect> needs a full http(s) URL, got {url!r}")
    return url, _method(element)


def _whole_number(element: ElementTree.Element, name: str, default: int, minimum: int) -> int:
    """An attribute that must be a whole number of at least `minimum` (else the walk ends, as
    Plivo refuses such a document)."""
    text = element.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise _Stop(f"<{element.tag}> {name} must be a whole number >= {minimum}, got {text!r}")
    return value


def _boolean(element: ElementTree.Element, name: str, *, default: bool) -> bool:
    text = element.get(name)
    if text is None:
        return default
    if text.lower() not in ("true", "false"):
        raise _Stop(f"<{element.tag}> {name} must be true or false, got {text!r}")
    return text.lower() == "true"


def _method(element: ElementTree.Element) -> str:
    method = element.get("method", "POST").upper()
    if method not in ("GET", "POST"):
        raise _Stop(f"<{element.tag}> method must be GET or POST, got {method!r}")
    return method


def _is_full_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
