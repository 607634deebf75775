"""Text from documents is data, never instructions: spot orders aimed at the assistant, and defuse
what an answer must never carry.

A retrieved passage may hold a prompt injection: "ignore previous instructions", a request to print
the system prompt, a Markdown image whose URL would carry the conversation to another host, fake
``[n]`` markers or chat-template tokens. The defences, in the order an answer meets them:

1. The prompt (:mod:`service.prompt`): sentences that read as orders to the assistant are withheld
   from the fenced source text, and chat-template tokens, tag look-alikes and ``[n]`` markers in it are
   neutralised, so the model neither sees the order nor a way out of its fence.
2. Verification (:mod:`service.cite`): such a sentence never supports a claim, a claim that is itself
   such an order is never verified, and the extractive generator never quotes one. Strict mode removes
   whatever fails, so an injected canary or fake source name has nothing left to stand on.
3. The answer (:func:`defuse_links`, :func:`system_prompt_sentences`, both modes): Markdown images are
   removed, links become their text, a bare URL stays only when a source holds it verbatim, and a
   sentence that repeats eight words of the system prompt goes.

The patterns are deliberately narrow (addressed to an AI, to "your instructions", to the answer
itself) so that ordinary company text ("Reply to the customer within 24 hours") still answers; see
docs/security.md for the rule and its measured rates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# -- orders to the assistant -------------------------------------------------------------------------

_AI = r"(?:AI|A\.I\.|assistants?|chat ?bots?|bots?|(?:large )?language models?|LLMs?|GPTs?|ChatGPT|models?)"
_RULES = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|constraints"
    r"|context|messages?|orders|policies|programming)"
)
_BEFORE = (
    r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|other|existing|safety"
    r"|former|old|current)"
)
_ANSWER = r"(?:answers?|repl(?:y|ies)|responses?)"
# Only words that name an AI: "for all models" is ordinary product text.
_AI_NAME = r"(?:AI|A\.I\.|assistants?|chat ?bots?|(?:large )?language models?|LLMs?|ChatGPT)"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "orders the assistant to ignore its instructions",
        re.compile(
            rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop)\s+(?:(?:all|any|every|of|the|your|my"
            rf"|these|those)\s+)*(?:{_BEFORE}\s+)+{_RULES}\b"
            rf"|\b(?:ignore|disregard|forget|override)\s+(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+)?{_RULES}\b"
            r"|\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:above|before|else|prior"
            r"|you\s+(?:were|have\s+been)\s+told)",
            re.I,
        ),
    ),
    (
        "asks for the system prompt",
        re.compile(
            r"\bsystem\s+(?:prompt|message)s?\b"
            r"|\b(?:your|the\s+assistant'?s|the\s+model'?s)\s+(?:instructions|prompt|rules)\b"
            r"|\b(?:hidden|secret|initial|original|developer)\s+(?:instructions|prompt|rules|message)\b",
            re.I,
        ),
    ),
    (
        "addresses the assistant",
        re.compile(
            rf"\b(?:note|message|instructions?|attention|important|reminder|notice|memo|hint)\s+(?:\w+\s+)?"
            rf"(?:to|for)\s+(?:the\s+|any\s+|all\s+|every\s+)?{_AI}\b"
            rf"|\b(?:if|when|since|as)\s+you\s+are\s+(?:an?|the)\s+(?:\w+\s+)?{_AI}\b"
            rf"|\b(?:dear|hey|hello|hi|attention)\s+{_AI}\b"
            rf"|\b(?:AI|assistants?|chat ?bots?|language models?|LLMs?)\s+(?:\w+\s+)?(?:reading|processing"
            r"|summari[sz]ing|answering|seeing|parsing|indexing|retrieving)\s+(?:this|these)\b"
            rf"|\b(?:to|for)\s+(?:any|all|every)\s+(?:\w+\s+)?{_AI_NAME}\b"
            rf"|^\W*{_AI_NAME}\s*[:,]"
            r"|\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\b|\bpretend\s+(?:to\s+be|you\s+are)\b"
            r"|\b(?:developer|maintenance|debug|god|admin|jailbreak)\s+mode\b|\bjailbr[eo]ak"
            r"|\b(?:new|updated|real|actual|true|additional)\s+(?:instructions|rules|task|orders)\s*:"
            r"|\b(?:system|admin|security|safety)\s+override\b",
            re.I,
        ),
    ),
    (
        "dictates the answer",
        re.compile(
            r"\b(?:reply|respond|answer|say|print|output|write|emit)\s+(?:\w+\s+){0,2}?(?:(?:only|exactly)\s+with"
            r"|with\s+(?:only|exactly|just)|(?:only|exactly)\s*:|verbatim|nothing\s+(?:else|but)|(?:with\s+)?the"
            r"\s+(?:word|words|phrase|string|code|token|sentence))\b"
            rf"|\b(?:every|each|all|any)\s+(?:of\s+your\s+)?(?:final\s+)?{_ANSWER}\s+(?:\w+\s+){{0,3}}?(?:must"
            r"|should|shall|has\s+to|have\s+to|needs?\s+to)\b"
            rf"|\b(?:begin|start|end|prefix|suffix|finish|close|sign|conclude)\s+(?:\w+\s+)?(?:your|the|every"
            rf"|each|all|any)\s+(?:final\s+)?{_ANSWER}\b"
            rf"|\b(?:at\s+the\s+(?:end|start|beginning|top|bottom)\s+of|to|in|into)\s+(?:your|every|each|all"
            rf"|any)\s+(?:final\s+)?{_ANSWER}\b"
            rf"|\b(?:answer|reply|respond|{_ANSWER})\b[^.\n]{{0,30}}?\b(?:in\s+)?(?:all\s+caps|(?:all\s+)?capital"
            r"\s+letters|capitals|upper\s*case|French|pirate|rhymes?|a\s+poem)\b"
            r"|\btranslate\s+(?:your|the|every|each)\s+(?:whole\s+|entire\s+)?(?:answer|reply|response)",
            re.I,
        ),
    ),
    (
        "tells the assistant what to cite",
        re.compile(
            r"\bcite\b[^.\n]{0,40}?(?:\[\s*\^?\d+\s*\]|\bsources?\s*#?\d+|\bas\s+(?:the\s+)?(?:only|official"
            r"|primary)\b|\bfor\s+(?:every|each|all)\b)"
            r"|\b(?:attribute|credit)\b[^.\n]{0,40}?\b(?:answer|response|information|facts?|this)\b[^.\n]{0,20}?"
            r"\bto\b"
            r"|\b(?:say|state|claim|mention|tell\s+the\s+user)\s+(?:that\s+)?(?:the|this|your)\s+(?:answer|information"
            r"|facts?|data)\s+(?:comes?|came)\s+from\b"
            r"|\b(?:add|append|include|insert)\s+(?:the\s+|this\s+|these\s+|a\s+)?(?:fake\s+|following\s+)?"
            r"(?:markers?|citations?|footnotes?(?:\s+definitions?)?)\b[^.\n]{0,40}?\b(?:answers?|repl(?:y|ies)"
            r"|responses?)\b",
            re.I,
        ),
    ),
    (
        "asks to render a link or image",
        re.compile(
            r"\A(?=[\s\S]*\b(?:answers?|repl(?:y|ies)|responses?|outputs?)\b)[\s\S]*?\b(?:render|include"
            r"|append|add|insert|embed|display|show|output|print|put|place|paste)\b[^.\n]{0,60}?\b(?:images?"
            r"|links?|urls?|markdown|pixels?|img|hyperlinks?|beacons?)\b"
            r"|\b(?:append|add|encode|attach|send|put|include)\b[^.\n]{0,40}?\b(?:question|conversation|chat"
            r"|history|prompt|messages?)\b[^.\n]{0,30}?\b(?:to|in|into)\s+(?:the\s+|this\s+|a\s+)?(?:url|link)"
            r"|!\[[^\]\n]*\]\(\s*\S*\?[^)\n]*(?:\{|%7B|\b(?:DATA|QUESTION|CONVERSATION|HISTORY|SECRET|PROMPT"
            r"|CHAT)\b)",
            re.I,
        ),
    ),
    (
        "holds chat-template or role tags",
        re.compile(
            r"<\|[^|<>\n]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?\s*(?:system|assistant|developer|instructions"
            r"|im_start|im_end|start_of_turn|end_of_turn|sources?)\b[^>\n]{0,80}>"
            r"|(?:^|\n)\s*(?:#{1,6}\s*)?(?:system|assistant|developer)\s*:",
            re.I,
        ),
    ),
]


def instruction_reason(text: str) -> str | None:
    """Why ``text`` (a sentence) reads as an order to the assistant, or None when it does not."""
    for reason, pattern in _PATTERNS:
        if pattern.search(text):
            return reason
    return None


def looks_like_instruction(text: str) -> bool:
    return instruction_reason(text) is not None


# -- the prompt's fence ------------------------------------------------------------------------------

# What a withheld sentence becomes in the prompt: short, with no word a model could echo as a claim.
WITHHELD = "[…]"

# Chat-template control tokens in text: llama.cpp tokenises the rendered prompt with special tokens on,
# so a document holding "<|im_start|>system" would otherwise open a real system turn.
_TEMPLATE = re.compile(r"<\|([^|<>\n]{1,40})\|>|\[(/?)INST\]|<<(/?)SYS>>", re.I)
_TAG = re.compile(
    r"<\s*(/?)\s*(sources?|system|instructions|user|assistant|developer|tool|s|im_start|im_end"
    r"|start_of_turn|end_of_turn|bos|eos|think)\b",
    re.I,
)
# Marker look-alikes in a document are not this answer's citations: shown to the model as "(n)".
_FAKE_MARKER = re.compile(
    r"\[\^?\s*((?:sources?|src|docs?|refs?)?[ \t:#]*\d{1,9}(?:\s*[-–,;]\s*\d{1,9})*)\s*\]", re.I
)
# A line that starts like the prompt's own framing ("Question:", "Sources:") would look like a new turn.
_FRAMING = re.compile(r"^([ \t]*)(question|sources|answer)([ \t]*):", re.I | re.M)


def neutralise(text: str) -> str:
    """``text`` with template tokens, tag look-alikes and prompt framing defused (wording kept)."""

    def template(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return f"‹|{m.group(1)}|›"
        if m.group(2) is not None:
            return f"‹{m.group(2)}INST›"
        return f"‹‹{m.group(3)}SYS››"

    text = _TEMPLATE.sub(template, text)
    text = _TAG.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", text)
    return _FRAMING.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)} -", text)


def neutralise_markers(text: str) -> str:
    return _FAKE_MARKER.sub(lambda m: f"({m.group(1).strip()})", text)


# Regions that pretend to be prompt structure are hostile whole, whatever their sentences say: from
# an opening chat or role tag to its close (or the passage's end), from a closing fence tag to the
# passage's end (what follows claims to stand outside the source), and HTML comments, which a reader
# of the rendered document never sees.
_ROLE_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:system|assistant|developer)[ \t]*:", re.I | re.M)
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)|\n[ \t]*\n")
_OPENERS: list[tuple[re.Pattern[str], re.Pattern[str] | None]] = [
    (re.compile(r"<!--"), re.compile(r"-->")),
    (re.compile(r"<\|im_start\|>", re.I), re.compile(r"<\|im_end\|>", re.I)),
    (re.compile(r"<\|(?:system|user|assistant|start_header_id|begin_of_text)\|>", re.I), None),
    (re.compile(r"\[INST\]", re.I), re.compile(r"\[/INST\]", re.I)),
    (re.compile(r"<<SYS>>", re.I), re.compile(r"<</SYS>>", re.I)),
    (re.compile(r"<\s*(system|instructions|assistant|developer|source)\b[^>\n]{0,80}>", re.I), None),
    (re.compile(r"<\s*/\s*(?:sources?|system|instructions)\s*>", re.I), None),
    # A role line ("System: ...") speaks for its whole paragraph, as a chat turn would.
    (_ROLE_LINE, _PARAGRAPH_END),
]


def order_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` that speak to the assistant rather than to a reader: sentences
    that read as orders, and regions dressed as prompt structure; sorted and merged."""
    from service.cite import split_sentences  # cite imports this module

    spans: list[tuple[int, int]] = []
    for s, e in split_sentences(text):
        if looks_like_instruction(text[s:e]):
            if text[s:e].rstrip()[-1:].isalnum():  # hard-wrapped mid-phrase: its next line too
                line_end = text.find("\n", e + 1)
                line_end = len(text) if line_end < 0 else line_end
                stop = _SENTENCE_END.search(text, e, line_end)
                e = stop.end() if stop else line_end
            spans.append((s, e))
    for opener, closer in _OPENERS:
        for m in opener.finditer(text):
            end = len(text)
            if closer is None and m.lastindex:  # <system ...> to its </system>; alone, just the tag
                closer_m = re.compile(rf"<\s*/\s*{re.escape(m.group(1))}\s*>", re.I).search(text, m.end())
                end = closer_m.end() if closer_m else m.end()
            elif closer is not None:
                closer_m = closer.search(text, m.end())
                end = closer_m.end() if closer_m else end
            spans.append((m.start(), end))
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def withhold(text: str) -> str:
    """``text`` with its :func:`order_spans` replaced by :data:`WITHHELD`."""
    return _replace(text, WITHHELD)


def without_orders(text: str) -> str:
    """``text`` with its :func:`order_spans` cut out (a paragraph break in their place)."""
    return _replace(text, "\n\n")


def _replace(text: str, by: str) -> str:
    out: list[str] = []
    pos = 0
    for s, e in order_spans(text):
        out.append(text[pos:s])
        out.append(by)
        pos = e
    out.append(text[pos:])
    return "".join(out)


# -- the answer --------------------------------------------------------------------------------------

_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)|!\[[^\]\n]*\]\[[^\]\n]*\]|<img\b[^>]*>", re.I)
_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\"'\n]*[\"'])?\s*\)")
# Tags a renderer that passes HTML through would run or fetch: never part of an answer.
_ACTIVE = re.compile(
    r"</?\s*(?:script|iframe|frame|style|object|embed|link|meta|form|svg|video|audio|base)\b[^>]*>", re.I
)
_HTML_LINK = re.compile(r"<a\b[^>]*>(.*?)</a\s*>", re.I | re.S)
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>", re.I)
_REFERENCE = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$\n?", re.M)
URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'`)\]]+", re.I)


def defuse_links(text: str, sources: Iterable[str]) -> str:
    """``text`` as it may be shown: no images or active HTML (script, iframe...), links reduced to
    their text, reference definitions dropped, a bare URL kept only when a source holds it verbatim,
    and no copy of the prompt's :data:`WITHHELD` placeholder.

    A Markdown renderer fetches an image without a click, so an injected
    ``![x](https://evil.example/p.png?d=...)`` would carry the conversation out; a link's text may
    hide where it leads. A URL a source holds verbatim carries nothing of the conversation.
    """
    held = "\n".join(sources)
    text = text.replace(WITHHELD, "")  # a model may copy the prompt's placeholder; it means nothing here
    text = _IMAGE.sub("", text)
    text = _ACTIVE.sub("", text)
    text = _HTML_LINK.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _AUTOLINK.sub(lambda m: m.group(1), text)
    text = _REFERENCE.sub("", text)

    def url(m: re.Match[str]) -> str:
        found = m.group(0).rstrip(".,;:!?")
        return m.group(0) if found in held else m.group(0)[len(found) :]

    text = URL.sub(url, text)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


# Eight words in a row is a quotation, not a coincidence of common phrasing.
NGRAM = 8
_WORDS = re.compile(r"[^\W_]+")


def _ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = [w.casefold() for w in _WORDS.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def repeats_system_prompt(sentence: str, system: str, sources: Iterable[str] = ()) -> bool:
    """Whether ``sentence`` holds eight consecutive words of ``system`` that no source holds."""
    leaked = _ngrams(sentence) & _ngrams(system)
    if not leaked:
        return False
    held: set[tuple[str, ...]] = set()
    for text in sources:
        held |= _ngrams(text)
    return bool(leaked - held)
