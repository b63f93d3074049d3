"""What a call says: templates filled from a contact's fields, values escaped, keypress menus,
answering machines (campaign/voice.py)."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from campaign.voice import (
    MissingValue,
    Template,
    VoiceContent,
    check_answer_template,
    parse_after,
    parse_gather,
)

DIGITS_URL = "https://dialer.example.com/plivo/digits?campaign=7&x=1"
ANN = {"first_name": "Ann", "appointment": "3 December at 10:00", "destination": "+14155551234"}


def parse(document: str) -> Element:
    root = ElementTree.fromstring(document)
    assert root.tag == "Response"
    return root


def test_a_message_is_spoken_with_the_contacts_fields() -> None:
    """{column} placeholders take the contact's values; the voice and language are Plivo's."""
    content = VoiceContent(
        message="Hello {first_name}, your appointment is on {appointment}.",
        voice="WOMAN",
        language="en-GB",
    )
    root = parse(content.answer_xml(ANN, digits_url=DIGITS_URL, machine=False))
    (speak,) = root
    assert speak.tag == "Speak"
    assert speak.text == "Hello Ann, your appointment is on 3 December at 10:00."
    assert speak.attrib == {"voice": "WOMAN", "language": "en-GB"}


@pytest.mark.parametrize(
    "value",
    [
        "</Speak><Dial>+19005550000</Dial><Speak>",
        "Tom & Jerry <b>",
        "\"quoted\" 'single'",
        "]]><Hangup/>",
    ],
)
def test_values_can_never_change_the_xml(value: str) -> None:
    """A field full of markup is spoken as text: the document keeps exactly its own elements,
    in a message and in an --answer-xml template (in text and in an attribute)."""
    fields = {**ANN, "first_name": value}
    message = VoiceContent(message="Hello {first_name}.", gather={"1": "confirmed"})
    root = parse(message.answer_xml(fields, digits_url=DIGITS_URL, machine=False))
    assert [element.tag for element in root.iter()] == ["Response", "GetDigits", "Speak"]
    assert root[0][0].text == f"Hello {value}."
    template = VoiceContent(
        answer_template='<Response><Speak voice="{first_name}">Hi {first_name}</Speak></Response>'
    )
    root = parse(template.answer_xml(fields, digits_url=DIGITS_URL, machine=False))
    assert [element.tag for element in root.iter()] == ["Response", "Speak"]
    assert root[0].text == f"Hi {value}"
    assert root[0].attrib == {"voice": value}


def test_defaults_and_missing_values() -> None:
    """{name|default} stands in for an empty value; an empty value without a default raises."""
    template = Template("Hi {first_name|there}, see you {when}.")
    assert template.render({"first_name": " ", "when": "soon"}) == "Hi there, see you soon."
    with pytest.raises(MissingValue) as missing:
        template.render({"first_name": "Ann", "when": ""})
    assert missing.value.name == "when"
    assert list(template.placeholders()) == [("first_name", "there"), ("when", None)]


def test_a_keypress_menu_posts_to_the_engine() -> None:
    """--gather: the message, then <GetDigits> around the prompt, its action the engine's digits
    URL (escaped in the attribute), one key among the menu's, timeout and retries as given."""
    content = VoiceContent(
        message="Hello {first_name}.",
        play_url="https://example.com/chime.mp3",
        gather={"1": "confirmed", "2": "cancelled", "9": "opt-out"},
        gather_prompt="Press 1 to confirm, 2 to cancel, 9 to stop these calls.",
        gather_timeout_s=7,
        gather_retries=2,
    )
    root = parse(content.answer_xml(ANN, digits_url=DIGITS_URL, machine=False))
    assert [element.tag for element in root] == ["Play", "Speak", "GetDigits"]
    menu = root[2]
    assert menu.attrib == {
        "action": DIGITS_URL,
        "method": "POST",
        "numDigits": "1",
        "validDigits": "129",
        "timeout": "7",
        "retries": "2",
    }
    assert menu[0].text == "Press 1 to confirm, 2 to cancel, 9 to stop these calls."
    # Without a prompt, the menu listens during the message itself.
    bare = VoiceContent(message="Hello {first_name}.", gather={"1": "confirmed"})
    root = parse(bare.answer_xml(ANN, digits_url=DIGITS_URL, machine=False))
    assert [element.tag for element in root] == ["GetDigits"]
    assert root[0][0].text == "Hello Ann."


def test_what_is_said_after_a_key() -> None:
    """--after: the text of the key pressed; nothing for another key."""
    content = VoiceContent(
        message="Hi", gather={"1": "confirmed"}, after_keypress={"1": "Thank you, {first_name}."}
    )
    assert parse(content.after_keypress_xml("1", ANN))[0].text == "Thank you, Ann."
    assert content.after_keypress_xml("2", ANN) == "<Response></Response>"


def test_answering_machines() -> None:
    """On a machine: hang up; the message (without the keypress menu: nobody will press); or
    wait for the beep and leave the voicemail message."""
    content = VoiceContent(
        message="Hello {first_name}.",
        gather={"1": "confirmed"},
        on_machine="voicemail",
        voicemail_message="Hi {first_name}, please call us back.",
    )
    root = parse(content.answer_xml(ANN, digits_url=DIGITS_URL, machine=True))
    assert [element.tag for element in root] == ["Wait", "Speak"]
    assert root[0].attrib["beep"] == "true"
    assert root[1].text == "Hi Ann, please call us back."
    message = VoiceContent(message="Hello {first_name}.", gather={"1": "x"}, on_machine="message")
    root = parse(message.answer_xml(ANN, digits_url=DIGITS_URL, machine=True))
    assert [element.tag for element in root] == ["Speak"]
    hangup = VoiceContent(message="Hello.", on_machine="hangup")
    assert hangup.answer_xml(ANN, digits_url=DIGITS_URL, machine=True) == (
        "<Response><Hangup/></Response>"
    )


def test_answer_templates_are_checked() -> None:
    """An --answer-xml template must be well-formed with a <Response> root (placeholders filled
    first); entity tricks are refused."""
    assert check_answer_template("<Response><Speak>{first_name}</Speak></Response>") is None
    assert "not well-formed" in (check_answer_template("<Response><Speak></Response>") or "")
    assert "not <Response>" in (check_answer_template("<Speak>hi</Speak>") or "")
    bomb = '<!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>'
    assert check_answer_template(bomb) is not None


def test_gather_and_after_options_are_parsed() -> None:
    """KEY=MEANING pairs, one key each of 0-9 * #; KEY=TEXT for --after; mistakes named."""
    assert parse_gather("1=Confirmed, 2=cancelled,9=opt-out") == {
        "1": "confirmed",
        "2": "cancelled",
        "9": "opt-out",
    }
    for text, message in (
        ("1", "is not KEY=MEANING"),
        ("12=x", "is not KEY=MEANING"),
        ("1=a,1=b", "key 1 is given twice"),
        ("1=<b>", "a meaning is 1 to 50"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_gather(text)
    assert parse_after(["1=Thank you, see you then."]) == {"1": "Thank you, see you then."}
    with pytest.raises(ValueError, match="is not KEY=TEXT"):
        parse_after(["1="])


def test_the_operators_own_text_is_spoken_not_parsed() -> None:
    """`Tom & Jerry <b>` in --message (or --after, --gather-prompt, the voicemail) is spoken as
    written: the document stays well-formed and holds no element the text names."""
    content = VoiceContent(
        message="Tom & Jerry <Hangup/> say hi {first_name}",
        gather={"1": "ok"},
        gather_prompt="Press 1 & <b>smile</b>",
        after_keypress={"1": "Thanks & bye"},
    )
    root = parse(content.answer_xml(ANN, digits_url=DIGITS_URL, machine=False))
    assert [element.tag for element in root.iter()] == ["Response", "Speak", "GetDigits", "Speak"]
    assert root[0].text == "Tom & Jerry <Hangup/> say hi Ann"
    assert root[1][0].text == "Press 1 & <b>smile</b>"
    assert parse(content.after_keypress_xml("1", ANN))[0].text == "Thanks & bye"


def test_control_characters_of_a_spreadsheet_cell_are_dropped() -> None:
    """A vertical tab or other C0 control in a field (which XML 1.0 cannot hold) is dropped, so
    the answer stays well-formed."""
    content = VoiceContent(message="Hello {first_name}.")
    fields = {**ANN, "first_name": "An\x0bn\x00\x1f"}
    assert parse(content.answer_xml(fields, digits_url=DIGITS_URL, machine=False))[0].text == (
        "Hello Ann."
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("<Response><{tag}/></Response>", "{tag} stands in a tag or attribute name"),
        ('<Response><Speak {attr}="x">hi</Speak></Response>', "{attr} stands in a tag or"),
        ("<Response><!-- {name} --><Speak>hi</Speak></Response>", "{name} stands in a comment"),
    ],
)
def test_answer_template_placeholders_must_stand_in_text(template: str, problem: str) -> None:
    """A placeholder in a tag or attribute name, or in a comment, could turn a value into markup
    (a field `Hangup` in `<{tag}/>`): refused at load; in text and attribute values it is fine."""
    assert (check_answer_template(template) or "").startswith(problem)
    assert check_answer_template('<Response><Speak voice="{v}">{a} {b}</Speak></Response>') is None
